package ca_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"net/netip"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"kzero.dev/kzero/internal/ca"
)

func TestIssueServingCertificate(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := newCA(t, ca.Config{Now: newClock(now).Now})
	key := p256(t)
	sc, err := c.IssueServingCertificate(ca.ServingRequest{
		DNSNames:  []string{"kzero-authority.kzero-system.svc", "kzero-authority.kzero-system.svc.cluster.local"},
		IPs:       []netip.Addr{netip.MustParseAddr("10.244.0.1")},
		PublicKey: key.Public(), TTL: 24 * time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	leaf := sc.Certificates[0]
	if leaf.IsCA || len(leaf.URIs) != 0 || leaf.Subject.CommonName != "kzero-authority.kzero-system.svc" {
		t.Errorf("leaf IsCA %t URIs %v CN %q", leaf.IsCA, leaf.URIs, leaf.Subject.CommonName)
	}
	if len(leaf.ExtKeyUsage) != 1 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
		t.Errorf("extended key usage %v, want serverAuth only", leaf.ExtKeyUsage)
	}
	if got := sc.NotAfter.Sub(now); got != 24*time.Hour {
		t.Errorf("lifetime from now %s, want 24h", got)
	}
	roots := x509.NewCertPool()
	for _, a := range c.Bundle().X509Authorities() {
		roots.AddCert(a)
	}
	inter := x509.NewCertPool()
	for _, ic := range sc.Certificates[1:] {
		inter.AddCert(ic)
	}
	for _, name := range []string{"kzero-authority.kzero-system.svc.cluster.local", "10.244.0.1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots, Intermediates: inter, CurrentTime: now}); err != nil {
			t.Errorf("verify for %s: %v", name, err)
		}
	}
	// Not an X.509-SVID: go-spiffe refuses it.
	if _, _, err := x509svid.Verify(sc.Certificates, x509bundle.FromX509Authorities(td, c.Bundle().X509Authorities())); err == nil {
		t.Error("a serving certificate verified as an X.509-SVID")
	}
}

func TestIssueServingCertificateRefusals(t *testing.T) {
	c := newCA(t, ca.Config{})
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	good := p256(t).Public()
	for _, tc := range []struct {
		name string
		req  ca.ServingRequest
		want string
	}{
		{"no name", ca.ServingRequest{PublicKey: good}, "ca: a serving certificate needs at least one DNS name or IP address"},
		{"wildcard", ca.ServingRequest{DNSNames: []string{"*.svc"}, PublicKey: good}, `ca: DNS name "*.svc" may hold only lower-case letters, digits, hyphens and dots (no wildcard)`},
		{"empty label", ca.ServingRequest{DNSNames: []string{"a..svc"}, PublicKey: good}, `ca: DNS name "a..svc" has an empty, over-long or hyphen-edged label`},
		{"weak key", ca.ServingRequest{DNSNames: []string{"a.svc"}, PublicKey: p224.Public()}, "ca: ECDSA curve P-224 is not accepted: use ECDSA P-256 (recommended), P-384, P-521, Ed25519, or RSA 3072 or 4096"},
		{"no IP", ca.ServingRequest{IPs: []netip.Addr{{}}, PublicKey: good}, `ca: IP address "invalid IP" is not an IPv4 or IPv6 address without a zone`},
		{"too long", ca.ServingRequest{DNSNames: []string{"a.svc"}, PublicKey: good, TTL: 25 * time.Hour}, "ca: TTL 25h0m0s is over the maximum 24h0m0s: ask for 24h0m0s or less"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.IssueServingCertificate(tc.req)
			if err == nil || err.Error() != tc.want {
				t.Errorf("err = %v, want %s", err, tc.want)
			}
		})
	}
}
