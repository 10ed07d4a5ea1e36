// Command app is the demo's sample workload: a program that knows nothing
// of kzero but the files kubelet mounts for it. Every 30 seconds it reads
// its credential bundle (key, then chain) and the trust bundle, verifies
// the chain with go-spiffe, and prints who it is, how long its certificate
// lives and what it verified against, so that a person watching its log
// sees kubelet refresh the certificate.
package main

import (
	"context"
	"fmt"
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
