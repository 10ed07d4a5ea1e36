// Command podcert is the program of the authority's end-to-end test image.
// It reads the credential bundle kubelet mounts from a podCertificate
// projected volume (the private key, then the certificate chain, PEM),
// parses it as an X.509-SVID with go-spiffe, prints
//
//	spiffe-id: spiffe://cluster.local/ns/NS/sa/SA
//
// and, when the trust bundle kubelet projects from the ClusterTrustBundle
// (bundle.pem, beside it) is there, verifies the SVID against it with
// go-spiffe and prints
//
//	verified: spiffe://cluster.local/ns/NS/sa/SA against bundle.pem
//
// Then it sleeps until it is stopped. It exits 1 if the credential bundle
// is missing or is no X.509-SVID, or if it does not verify.
//
//	podcert [FILE]   (default /var/run/secrets/kzero.dev/identity/credentialbundle.pem)
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

const defaultPath = "/var/run/secrets/kzero.dev/identity/credentialbundle.pem"

func main() {
	path := defaultPath
	if len(os.Args) > 1 {
		path = os.Args[1]
	}
	b, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "podcert:", err)
		os.Exit(1)
	}
	// The file holds the key and the chain; go-spiffe skips the blocks of
	// the other type in each.
	svid, err := x509svid.Parse(b, b)
	if err != nil {
		fmt.Fprintln(os.Stderr, "podcert: not an X.509-SVID:", err)
		os.Exit(1)
	}
	fmt.Printf("spiffe-id: %s\nchain: %d certificates, leaf valid until %s\n",
		svid.ID, len(svid.Certificates), svid.Certificates[0].NotAfter.UTC().Format("2006-01-02T15:04:05Z"))
	bundlePath := filepath.Join(filepath.Dir(path), "bundle.pem")
	if _, err := os.Stat(bundlePath); err == nil {
		bundle, err := x509bundle.Load(svid.ID.TrustDomain(), bundlePath)
		if err != nil {
			fmt.Fprintln(os.Stderr, "podcert: trust bundle:", err)
			os.Exit(1)
		}
		id, _, err := x509svid.Verify(svid.Certificates, bundle)
		if err != nil {
			fmt.Fprintln(os.Stderr, "podcert: the SVID does not verify against the trust bundle:", err)
			os.Exit(1)
		}
		fmt.Printf("verified: %s against bundle.pem\n", id)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
}
