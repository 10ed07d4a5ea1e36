package ca_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"kzero.dev/kzero/internal/ca"
	"kzero.dev/kzero/internal/ca/catest"
)

func newClock(t time.Time) *catest.Clock { return catest.NewClock(t) }

var td = spiffeid.RequireTrustDomainFromString("cluster.local")

func mustID(t testing.TB, s string) spiffeid.ID {
	t.Helper()
	id, err := spiffeid.FromString(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func newCA(t testing.TB, cfg ca.Config) *ca.CA {
	t.Helper()
	if cfg.TrustDomain.IsZero() {
		cfg.TrustDomain = td
	}
	if cfg.Store == nil {
		cfg.Store = catest.NewMemStore(nil)
	}
	c, err := ca.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("ca.New: %v", err)
	}
	return c
}

// csrFor makes a CSR signed by key, with the names in tmpl.
func csrFor(t testing.TB, key crypto.Signer, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	if tmpl == nil {
		tmpl = &x509.CertificateRequest{}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func p256(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// publishedBundle round-trips the CA's bundle through its JSON form, the
// way a peer receives it, and parses it with go-spiffe.
func publishedBundle(t testing.TB, c *ca.CA) *spiffebundle.Bundle {
	t.Helper()
	doc, err := c.Bundle().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	b, err := spiffebundle.Parse(td, doc)
	if err != nil {
		t.Fatalf("go-spiffe cannot parse the published bundle: %v\n%s", err, doc)
	}
	return b
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

func errorIs(err, target error) bool { return errors.Is(err, target) }

func asRequestError(err error, target **ca.RequestError) bool { return errors.As(err, target) }

// verifyOpts trusts exactly the X.509 authorities of c's bundle.
func verifyOpts(c *ca.CA, now time.Time) x509.VerifyOptions {
	pool := x509.NewCertPool()
	for _, a := range c.Bundle().X509Authorities() {
		pool.AddCert(a)
	}
	return x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
}
