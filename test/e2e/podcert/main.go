// Command podcert is the program of the authority's end-to-end test image.
// It reads the credential bundle kubelet mounts from a podCertificate
// projected volume (the private key, then the certificate chain, PEM),
// parses it as an X.509-SVID with go-spiffe, prints
//
//	spiffe-id: spiffe://cluster.local/ns/NS/sa/SA
//
// and then sleeps until it is stopped. It exits 1 if the bundle is missing
// or is no X.509-SVID.
//
//	podcert [FILE]   (default /var/run/secrets/kzero.dev/identity/credentialbundle.pem)
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
}
