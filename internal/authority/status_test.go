package authority

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"testing"
	"time"

	certv1 "k8s.io/api/certificates/v1"

	"kzero.dev/kzero/internal/ca"
	"kzero.dev/kzero/internal/ca/catest"
)

func newCA(t *testing.T, now time.Time) *ca.CA {
	t.Helper()
	c, err := ca.New(context.Background(), ca.Config{TrustDomain: td, Store: catest.NewMemStore(nil), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func csr(t *testing.T, key any) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// What the signer asks of the CA gives exactly the lifetime decided, so
// kube-apiserver's lifetime checks pass; the status it writes says what
// the leaf says and refreshes at half life.
func TestIssuedStatus(t *testing.T) {
	now := time.Date(2026, 7, 1, 12, 0, 0, 123, time.UTC)
	c := newCA(t, now)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	in := input()
	in.Request.Spec.StubPKCS10Request = csr(t, key)
	d := Decide(in)
	svid, err := c.IssueX509SVID(ca.X509Request{ID: d.ID, CSR: in.Request.Spec.StubPKCS10Request, TTL: d.Lifetime - c.Backdate()})
	if err != nil {
		t.Fatal(err)
	}
	if err := checkLifetime(in.Request, svid); err != nil {
		t.Fatal(err)
	}
	if got := svid.NotAfter.Sub(svid.NotBefore); got != time.Hour {
		t.Errorf("lifetime %s, want 1h", got)
	}
	st := issuedStatus(in.Request, svid, DefaultRefreshAt, now)
	if len(st.Conditions) != 1 || st.Conditions[0].Type != certv1.PodCertificateRequestConditionTypeIssued || st.Conditions[0].Reason != "Issued" {
		t.Fatalf("conditions %+v", st.Conditions)
	}
	if !st.NotBefore.Time.Equal(svid.NotBefore) || !st.NotAfter.Time.Equal(svid.NotAfter) || !st.BeginRefreshAt.Time.Equal(svid.NotBefore.Add(30*time.Minute)) {
		t.Errorf("times %s %s %s", st.NotBefore, st.BeginRefreshAt, st.NotAfter)
	}
	for _, tc := range []struct {
		at   float64
		want time.Duration // after NotBefore
	}{
		{0.25, 15 * time.Minute},
		{0.001, 10 * time.Minute}, // the API's earliest
		{0.99, 50 * time.Minute},  // the API's latest
	} {
		st := issuedStatus(in.Request, svid, tc.at, now)
		if got := st.BeginRefreshAt.Sub(svid.NotBefore); got != tc.want {
			t.Errorf("refresh at %g: beginRefreshAt is NotBefore+%s, want +%s", tc.at, got, tc.want)
		}
	}
	if st.CertificateChain != string(svid.ChainPEM()) {
		t.Error("the chain is not the SVID's")
	}
	// The trust bundle verifies the chain it is published beside.
	roots := x509.NewCertPool()
	for rest := []byte(bundlePEM(c.Bundle())); ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		cert, _ := x509.ParseCertificate(b.Bytes)
		roots.AddCert(cert)
	}
	if _, err := svid.Certificates[0].Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("the leaf does not verify against the published bundle: %v", err)
	}
}

func TestCheckLifetime(t *testing.T) {
	nb := time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)
	r := input().Request
	r.Spec.MaxExpirationSeconds = seconds(3600)
	for _, tc := range []struct {
		name string
		life time.Duration
		want string
	}{
		{"exactly an hour", time.Hour, ""},
		{"a second too long", time.Hour + time.Second, "authority: the CA signed a leaf that lives 1h0m1s, outside [1h0m0s, 1h0m0s] (maxExpirationSeconds): the authority's lifetime or backdate does not match the CA's settings"},
		{"too short", 59 * time.Minute, "authority: the CA signed a leaf that lives 59m0s, outside [1h0m0s, 1h0m0s] (maxExpirationSeconds): the authority's lifetime or backdate does not match the CA's settings"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkLifetime(r, &ca.X509SVID{NotBefore: nb, NotAfter: nb.Add(tc.life)})
			if got := fmt.Sprint(err); (err == nil && tc.want != "") || (err != nil && got != tc.want) {
				t.Errorf("checkLifetime = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want refusal
		ok   bool
	}{
		{"unsupported key", &ca.RequestError{Kind: ca.ErrUnsupportedKey, Detail: "x"}, refusal{"Denied", "UnsupportedKeyType"}, true},
		{"bad signature", &ca.RequestError{Kind: ca.ErrBadSignature, Detail: "x"}, refusal{"Denied", "InvalidRequest"}, true},
		{"extra SAN", &ca.RequestError{Kind: ca.ErrExtraSAN, Detail: "x"}, refusal{"Denied", "InvalidRequest"}, true},
		{"TTL over the CA's maximum", &ca.RequestError{Kind: ca.ErrTTLTooLong, Detail: "x"}, refusal{"Failed", "SignerFailed"}, true},
		{"no authority: retried", &ca.RequestError{Kind: ca.ErrNoAuthority, Detail: "x"}, refusal{}, false},
		{"other error: retried", errors.New("boom"), refusal{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := classify(tc.err)
			if got != tc.want || ok != tc.ok {
				t.Errorf("classify = %+v, %v; want %+v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestUnsupportedKeyIsDenied(t *testing.T) {
	c := newCA(t, time.Now())
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, err := c.IssueX509SVID(ca.X509Request{ID: Decide(input()).ID, CSR: csr(t, key)})
	if got, ok := classify(err); !ok || got.reason != "UnsupportedKeyType" {
		t.Errorf("an RSA 2048 key: classify(%v) = %+v, %v; want Denied UnsupportedKeyType", err, got, ok)
	}
}

func TestKeyType(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	for _, tc := range []struct {
		name string
		csr  []byte
		want string
	}{
		{"P-256", csr(t, p256), "ECDSA-P256"},
		{"P-384", csr(t, p384), "ECDSA-P384"},
		{"Ed25519", csr(t, ed), "Ed25519"},
		{"garbage", []byte("nope"), ""},
	} {
		if got := keyType(tc.csr); got != tc.want {
			t.Errorf("%s: keyType = %q, want %q", tc.name, got, tc.want)
		}
	}
}
