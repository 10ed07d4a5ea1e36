package ca_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"kzero.dev/kzero/internal/ca"
	"kzero.dev/kzero/internal/filestore"
)

// A CA kept in a file, as `kzero up` keeps it: a workload proves it holds
// a key with a CSR, gets an X.509-SVID and a JWT-SVID, and a peer verifies
// both with go-spiffe against the published bundle.
func Example() {
	dir, _ := os.MkdirTemp("", "kzero-ca-example")
	defer os.RemoveAll(dir)
	store, err := filestore.Open(filepath.Join(dir, "ca", "state.json"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer store.Close()

	authority, err := ca.New(context.Background(), ca.Config{
		TrustDomain: spiffeid.RequireTrustDomainFromString("cluster.local"),
		Store:       store,
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	// The workload's side: a key that never leaves it, and a CSR.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	id := spiffeid.RequireFromString("spiffe://cluster.local/ns/demo/sa/web")

	svid, err := authority.IssueX509SVID(ca.X509Request{ID: id, CSR: csr})
	if err != nil {
		fmt.Println(err)
		return
	}
	jwt, err := authority.IssueJWTSVID(ca.JWTRequest{ID: id, Audience: []string{"api"}})
	if err != nil {
		fmt.Println(err)
		return
	}

	// A peer's side: only the published bundle.
	doc, _ := authority.Bundle().Marshal()
	bundle, err := spiffebundle.Parse(id.TrustDomain(), doc)
	if err != nil {
		fmt.Println(err)
		return
	}
	verified, _, err := x509svid.Verify(svid.Certificates, bundle)
	fmt.Println("X.509-SVID:", verified, err)
	fmt.Println("lifetime:", svid.NotAfter.Sub(svid.NotBefore)-ca.DefaultBackdate)
	fmt.Println("chain:", len(svid.Chain), "certificates, leaf first")
	parsed, err := jwtsvid.ParseAndValidate(jwt.Token, bundle, []string{"api"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("JWT-SVID:", parsed.ID, "valid for", parsed.Expiry.Sub(jwt.IssuedAt).Round(time.Second))
	seq, _ := bundle.SequenceNumber()
	fmt.Println("bundle:", len(bundle.X509Authorities()), "X.509 authorities,", len(bundle.JWTAuthorities()), "JWT key, sequence", seq)
	// Output:
	// X.509-SVID: spiffe://cluster.local/ns/demo/sa/web <nil>
	// lifetime: 1h0m0s
	// chain: 2 certificates, leaf first
	// JWT-SVID: spiffe://cluster.local/ns/demo/sa/web valid for 5m0s
	// bundle: 2 X.509 authorities, 1 JWT key, sequence 1
}
