package authority_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"kzero.dev/kzero/internal/authority"
	"kzero.dev/kzero/internal/ca"
)

func TestNewAuditSVID(t *testing.T) {
	var l atomic.Pointer[ca.CA]
	log := slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		name string
		cfg  authority.AuditSVIDConfig
		want string
	}{
		{"empty", authority.AuditSVIDConfig{}, "authority: invalid audit SVID config: trustDomain: required\nca: required\nlog: required"},
		{"no namespace", authority.AuditSVIDConfig{TrustDomain: td, CA: l.Load, Log: log},
			`authority: invalid audit SVID config: namespace: "" does not make the authority's SPIFFE ID: path cannot contain empty segments`},
		{"bad namespace", authority.AuditSVIDConfig{TrustDomain: td, Namespace: "a/b", CA: l.Load, Log: log},
			`authority: invalid audit SVID config: namespace: "a/b" does not make the authority's SPIFFE ID: path segment characters are limited to letters, numbers, dots, dashes, and underscores`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := authority.NewAuditSVID(tc.cfg); err == nil || err.Error() != tc.want {
				t.Errorf("err = %v\nwant  %s", err, tc.want)
			}
		})
	}
}

// TestAuditSVID: before the replica loads its CA there is no SVID, and
// the failure is logged once; then the authority's own SVID, from that CA,
// the same until half its life, then a new one with a new key.
func TestAuditSVID(t *testing.T) {
	var l atomic.Pointer[ca.CA]
	var logs bytes.Buffer
	now := time.Now()
	src, err := authority.NewAuditSVID(authority.AuditSVIDConfig{TrustDomain: td, Namespace: "kzero-system", CA: l.Load,
		Log: slog.New(slog.NewTextHandler(&logs, nil)), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := src.GetX509SVID(); err == nil || !strings.HasPrefix(err.Error(), "authority: the CA is not loaded yet") {
			t.Fatalf("no CA: %v", err)
		}
	}
	if n := strings.Count(logs.String(), "level=ERROR msg=\"no X.509-SVID for the audit trail: its checkpoints wait, and its records go out unsigned until then\""); n != 1 {
		t.Errorf("the failure is logged as an error %d times, want once:\n%s", n, logs.String())
	}
	c := newCA(t, td, nil)
	l.Store(c)
	first, err := src.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := x509svid.Verify(first.Certificates, c.Bundle()); err != nil || first.ID != endpointID {
		t.Fatalf("SVID %s does not verify against the CA: %v", first.ID, err)
	}
	if k, ok := first.PrivateKey.Public().(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("key %T, want ECDSA P-256 (ES256 checkpoints)", first.PrivateKey.Public())
	}
	if again, _ := src.GetX509SVID(); again != first {
		t.Error("a new SVID before half its life")
	}
	leaf := first.Certificates[0]
	now = leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore)/2 + time.Second)
	if renewed, err := src.GetX509SVID(); err != nil || renewed == first || renewed.Certificates[0].SerialNumber.Cmp(leaf.SerialNumber) == 0 {
		t.Errorf("not renewed at half life: %v", err)
	}
}
