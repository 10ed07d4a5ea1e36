// Command podcert is the program of the authority's end-to-end test image.
// It reads the credential bundle kubelet mounts from a podCertificate
// projected volume (the private key, then the certificate chain, PEM),
// parses it as an X.509-SVID with go-spiffe and prints
//
//	spiffe-id: spiffe://cluster.local/ns/NS/sa/SA
//	serial: HEX
//	chain: N certificates, leaf valid until TIME
//
// and, when the trust bundle kubelet projects from the ClusterTrustBundle
// (bundle.pem, beside it) is there, verifies the SVID against it with
// go-spiffe and prints
//
//	verified: spiffe://cluster.local/ns/NS/sa/SA against bundle.pem
//
// Then it reads the files again every 2 seconds and prints the same again
// whenever kubelet has replaced the certificate, until it is stopped. It
// exits 1 if the credential bundle is missing or is no X.509-SVID, or if
// it does not verify.
//
//	podcert [FILE]   (default /var/run/secrets/kzero.dev/identity/credentialbundle.pem)
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

const defaultPath = "/var/run/secrets/kzero.dev/identity/credentialbundle.pem"

func main() {
	path := defaultPath
	if len(os.Args) > 1 {
		path = os.Args[1]
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	last := ""
	for {
		serial, err := report(path, last)
		if err != nil {
			fmt.Fprintln(os.Stderr, "podcert:", err)
			os.Exit(1)
		}
		last = serial
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
}

// report prints the SVID at path unless its serial is last, and returns
// its serial.
func report(path, last string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	// The file holds the key and the chain; go-spiffe skips the blocks of
	// the other type in each.
	svid, err := x509svid.Parse(b, b)
	if err != nil {
		return "", fmt.Errorf("not an X.509-SVID: %w", err)
	}
	leaf := svid.Certificates[0]
	serial := leaf.SerialNumber.Text(16)
	if serial == last {
		return serial, nil
	}
	fmt.Printf("spiffe-id: %s\nserial: %s\nchain: %d certificates, leaf valid until %s\n",
		svid.ID, serial, len(svid.Certificates), leaf.NotAfter.UTC().Format(time.RFC3339))
	bundlePath := filepath.Join(filepath.Dir(path), "bundle.pem")
	if _, err := os.Stat(bundlePath); errors.Is(err, os.ErrNotExist) {
		return serial, nil
	}
	bundle, err := x509bundle.Load(svid.ID.TrustDomain(), bundlePath)
	if err != nil {
		return "", fmt.Errorf("trust bundle: %w", err)
	}
	id, _, err := x509svid.Verify(svid.Certificates, bundle)
	if err != nil {
		return "", fmt.Errorf("the SVID does not verify against the trust bundle: %w", err)
	}
	fmt.Printf("verified: %s against bundle.pem\n", id)
	return serial, nil
}
