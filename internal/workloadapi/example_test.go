package workloadapi_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	spiffewl "github.com/spiffe/go-spiffe/v2/workloadapi"

	"kzero.dev/kzero/internal/ca"
	"kzero.dev/kzero/internal/ca/catest"
	"kzero.dev/kzero/internal/workloadapi"
)

// localSigner signs with a CA in the same process, as `kzero up` could;
// kzero agent asks the authority over mTLS instead.
type localSigner struct{ ca *ca.CA }

func (s localSigner) SignX509SVID(_ context.Context, id spiffeid.ID, csr []byte) ([][]byte, error) {
	svid, err := s.ca.IssueX509SVID(ca.X509Request{ID: id, CSR: csr})
	if err != nil {
		return nil, err
	}
	return svid.Chain, nil
}

func (s localSigner) SignJWTSVID(_ context.Context, id spiffeid.ID, audience []string) (string, error) {
	svid, err := s.ca.IssueJWTSVID(ca.JWTRequest{ID: id, Audience: audience})
	if err != nil {
		return "", err
	}
	return svid.Token, nil
}

// A Workload API on a unix socket that gives this process an identity,
// and go-spiffe's client fetching it.
func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	td := spiffeid.RequireTrustDomainFromString("cluster.local")
	authority, err := ca.New(ctx, ca.Config{TrustDomain: td, Store: catest.NewMemStore(nil)})
	if err != nil {
		panic(err)
	}
	bundles := &workloadapi.Bundles{}
	if err := bundles.Set(authority.Bundle()); err != nil {
		panic(err)
	}
	web := spiffeid.RequireFromPath(td, "/ns/app/sa/web")
	attest := func(_ context.Context, c workloadapi.Caller) (spiffeid.ID, error) {
		if int(c.PID) == os.Getpid() {
			return web, nil
		}
		return spiffeid.ID{}, &workloadapi.DeniedError{Reason: "only the example's process has an identity here"}
	}

	dir, err := os.MkdirTemp("", "wlapi")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	lis, err := (&net.ListenConfig{}).Listen(ctx, "unix", filepath.Join(dir, "agent.sock"))
	if err != nil {
		panic(err)
	}
	srv, err := workloadapi.New(workloadapi.Config{
		Listener:    lis,
		TrustDomain: td,
		Attestor:    workloadapi.AttestorFunc(attest),
		Signer:      localSigner{authority},
		Bundles:     bundles,
		Log:         slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()

	client, err := spiffewl.New(ctx, spiffewl.WithAddr("unix://"+lis.Addr().String()))
	if err != nil {
		panic(err)
	}
	defer client.Close()
	svid, err := client.FetchX509SVID(ctx)
	if err != nil {
		panic(err)
	}
	fmt.Println(svid.ID)

	cancel()
	fmt.Println(<-done)
	// Output:
	// spiffe://cluster.local/ns/app/sa/web
	// context canceled
}
