// Command workload is the program of the agent's end-to-end test image: a
// workload that knows only the SPIFFE Workload API, found through
// SPIFFE_ENDPOINT_SOCKET, and go-spiffe. It prints
//
//	x509: ID serial HEX verified
//	jwt-api: ID          (a JWT-SVID validated by the Workload API)
//	jwt-bundle: ID       (the same, validated with go-spiffe's jwtsvid against the JWT bundles)
//
// then holds one FetchX509SVID stream open and prints, for every message
// it receives on it,
//
//	stream N: ID serial HEX verified
//
// so that a test sees rotations arrive without a reconnection. It exits 1
// on any error, and prints it.
//
// With the argument tamper, it tries instead what a hostile workload
// would with the socket's directory: make a file in it and remove the
// socket, and prints
//
//	create: ERROR
//	remove: ERROR
//
// ("ok" where it succeeded), then exits 0.
package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

const audience = "kzero-e2e"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) == 2 && os.Args[1] == "tamper" {
		tamper()
		return
	}
	if err := run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Println("error:", err)
		os.Exit(1)
	}
}

// tamper tries to write into the directory of SPIFFE_ENDPOINT_SOCKET.
func tamper() {
	sock := strings.TrimPrefix(os.Getenv("SPIFFE_ENDPOINT_SOCKET"), "unix://")
	result := func(err error) string {
		if err != nil {
			return err.Error()
		}
		return "ok"
	}
	fmt.Println("create:", result(os.WriteFile(filepath.Join(filepath.Dir(sock), "planted"), []byte("x"), 0o600)))
	fmt.Println("remove:", result(os.Remove(sock)))
}

func run(ctx context.Context) error {
	addr := os.Getenv("SPIFFE_ENDPOINT_SOCKET")
	if addr == "" {
		return errors.New("SPIFFE_ENDPOINT_SOCKET is not set")
	}
	client, err := workloadapi.New(ctx)
	if err != nil {
		return err
	}
	defer client.Close()
	xc, err := client.FetchX509Context(ctx)
	if err != nil {
		return fmt.Errorf("FetchX509Context: %w", err)
	}
	svid := xc.DefaultSVID()
	if _, _, err := x509svid.Verify(svid.Certificates, xc.Bundles); err != nil {
		return fmt.Errorf("the X.509-SVID does not verify: %w", err)
	}
	fmt.Printf("x509: %s serial %s verified\n", svid.ID, svid.Certificates[0].SerialNumber.Text(16))

	js, err := client.FetchJWTSVID(ctx, jwtsvid.Params{Audience: audience})
	if err != nil {
		return fmt.Errorf("FetchJWTSVID: %w", err)
	}
	v, err := client.ValidateJWTSVID(ctx, js.Marshal(), audience)
	if err != nil {
		return fmt.Errorf("ValidateJWTSVID: %w", err)
	}
	fmt.Printf("jwt-api: %s\n", v.ID)
	bundles, err := client.FetchJWTBundles(ctx)
	if err != nil {
		return fmt.Errorf("FetchJWTBundles: %w", err)
	}
	p, err := jwtsvid.ParseAndValidate(js.Marshal(), bundles, []string{audience})
	if err != nil {
		return fmt.Errorf("jwtsvid.ParseAndValidate: %w", err)
	}
	fmt.Printf("jwt-bundle: %s\n", p.ID)
	// One connection per pod from here on, as a workload that holds an
	// X509Source has.
	client.Close()
	return watch(ctx, addr)
}

// watch holds one FetchX509SVID stream, through go-spiffe's generated
// client, and prints every message.
func watch(ctx context.Context, addr string) error {
	conn, err := grpc.NewClient(strings.Replace(addr, "unix://", "unix:", 1), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx = metadata.AppendToOutgoingContext(ctx, "workload.spiffe.io", "true")
	stream, err := workload.NewSpiffeWorkloadAPIClient(conn).FetchX509SVID(ctx, &workload.X509SVIDRequest{})
	if err != nil {
		return err
	}
	for n := 1; ; n++ {
		resp, err := stream.Recv()
		if err != nil {
			return fmt.Errorf("stream: %w", err)
		}
		if len(resp.Svids) == 0 {
			return errors.New("stream: a message with no SVID")
		}
		s := resp.Svids[0]
		id, err := spiffeid.FromString(s.SpiffeId)
		if err != nil {
			return err
		}
		certs, err := x509.ParseCertificates(s.X509Svid)
		if err != nil {
			return err
		}
		roots, err := x509.ParseCertificates(s.Bundle)
		if err != nil {
			return err
		}
		if _, _, err := x509svid.Verify(certs, x509bundle.FromX509Authorities(id.TrustDomain(), roots)); err != nil {
			return fmt.Errorf("stream %d: the X.509-SVID does not verify: %w", n, err)
		}
		fmt.Printf("stream %d: %s serial %s verified\n", n, id, certs[0].SerialNumber.Text(16))
	}
}
