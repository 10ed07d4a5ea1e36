// Command app is the demo's sample workload: a program that knows nothing
// of kzero but the files kubelet mounts for it. Every 30 seconds it reads
// its credential bundle (key, then chain) and the trust bundle, verifies
// the chain with go-spiffe, and prints who it is, how long its certificate
// lives and what it verified against, so that a person watching its log
// sees kubelet refresh the certificate.
//
// It is also a plain HTTP program, for the mesh part of the demo:
//
//	demo-app serve ADDR   answers GET / on ADDR with "hello from <pod>",
//	                      beside the identity report above
//	demo-app call URL     sends one GET to URL and prints the status and
//	                      answer, or the error, and how long it took
//
// It speaks plain HTTP only: the mesh carries it over mTLS.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

const dir = "/var/run/secrets/kzero.dev/identity/"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	switch {
	case len(os.Args) == 3 && os.Args[1] == "call":
		call(os.Args[2])
		return
	case len(os.Args) == 3 && os.Args[1] == "serve":
		go serve(ctx, os.Args[2])
	case len(os.Args) != 1:
		fmt.Fprintln(os.Stderr, "usage: demo-app [serve ADDR | call URL]")
		os.Exit(2)
	}
	for {
		if err := report(os.Stdout); err != nil {
			fmt.Fprintln(os.Stdout, "no identity:", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(30 * time.Second):
		}
	}
}

func report(w *os.File) error {
	creds, err := os.ReadFile(dir + "credentialbundle.pem")
	if err != nil {
		return err
	}
	svid, err := x509svid.Parse(creds, creds)
	if err != nil {
		return fmt.Errorf("not an X.509-SVID: %w", err)
	}
	b, err := x509bundle.Load(svid.ID.TrustDomain(), dir+"bundle.pem")
	if err != nil {
		return fmt.Errorf("trust bundle: %w", err)
	}
	if _, _, err := x509svid.Verify(svid.Certificates, b); err != nil {
		return fmt.Errorf("does not verify: %w", err)
	}
	leaf := svid.Certificates[0]
	serial := leaf.SerialNumber.Text(16)
	if len(serial) > 8 {
		serial = serial[:8]
	}
	fmt.Fprintf(w, "I am %s; certificate serial %s… valid %s to %s (%s); verified against %d CAs of the trust bundle\n",
		svid.ID, serial, leaf.NotBefore.UTC().Format(time.TimeOnly), leaf.NotAfter.UTC().Format(time.TimeOnly),
		leaf.NotAfter.Sub(leaf.NotBefore).Round(time.Minute), len(b.X509Authorities()))
	return nil
}

// serve answers every GET with the pod's name until ctx ends.
func serve(ctx context.Context, addr string) {
	host, _ := os.Hostname()
	srv := &http.Server{Addr: addr, ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "hello from %s\n", host)
	})}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, "serve:", err)
		os.Exit(1)
	}
}

// call sends one GET, on a new connection, and prints what came of it.
func call(url string) {
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	start := time.Now()
	resp, err := client.Get(url) //nolint:gosec // G704: the demo's person names the URL
	took := time.Since(start).Round(100 * time.Microsecond)
	if err != nil {
		fmt.Printf("%s: error after %s: %v\n", url, took, err)
		return
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	fmt.Printf("%s: %s in %s: %s", url, resp.Status, took, body)
}
