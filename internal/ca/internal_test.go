package ca

import (
	"context"
	"crypto"
	"encoding/base64"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"

	"kzero.dev/kzero/internal/ca/catest"
)

var testTD = spiffeid.RequireTrustDomainFromString("cluster.local")

func testCA(t testing.TB, now func() time.Time) *CA {
	t.Helper()
	c, err := New(context.Background(), Config{TrustDomain: testTD, Store: catest.NewMemStore(nil), Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// corruptSigner signs, then flips a bit of the signature: a faulty HSM or
// a fault attack.
type corruptSigner struct{ crypto.Signer }

func (s corruptSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	sig, err := s.Signer.Sign(r, digest, opts)
	if err == nil {
		sig[len(sig)-1] ^= 1
	}
	return sig, err
}

// TestNoBadSignatureLeavesTheCA: a signature that does not verify with the
// issuing CA's public key is never returned.
func TestNoBadSignatureLeavesTheCA(t *testing.T) {
	c := testCA(t, nil)
	is := c.snap.Load().activeIssuer(time.Now())
	is.rec.signer = corruptSigner{is.rec.signer}
	_, csr := catest.NewCSR(t)
	svid, err := c.IssueX509SVID(X509Request{ID: spiffeid.RequireFromString("spiffe://cluster.local/a"), CSR: csr})
	if err == nil {
		t.Fatalf("issued %v with a corrupt signature", svid.Chain)
	}
	want := "ca: sign X.509-SVID for spiffe://cluster.local/a: x509: signature returned by signer is invalid"
	if !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error = %v, want prefix %q", err, want)
	}
}

func TestPlan(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cfg := Config{TrustDomain: testTD}.withDefaults()
	rec := func(id string, created, activate time.Time, ttl time.Duration) *record {
		return &record{ID: id, Created: created, ActivateAt: activate, NotAfter: created.Add(ttl)}
	}
	root := rec("r1", t0, t0, cfg.RootTTL)
	iss := rec("i1", t0, t0, cfg.IssuerTTL)
	iss.Parent = "r1"
	jwt := rec("j1", t0, t0, cfg.JWTKeyTTL)
	steady := func() *state {
		return &state{Roots: []*record{root}, Issuers: []*record{iss}, JWTKeys: []*record{jwt}}
	}
	issuerDue := iss.NotAfter.Add(-cfg.X509SVIDMaxTTL - cfg.PublishLead)
	for _, tc := range []struct {
		name string
		s    *state
		now  time.Time
		want []string
	}{
		{"empty store", &state{}, t0, []string{
			"new-root active 2026-01-01T00:00:00Z: no root CA is valid: making one that signs at once",
			"new-issuer under <new root> active 2026-01-01T00:00:00Z: no issuing CA is valid: making one that signs at once",
			"new-jwt-key active 2026-01-01T00:00:00Z: no JWT key is valid: making one that signs at once",
		}},
		{"nothing due", steady(), t0.Add(time.Hour), nil},
		{"issuer successor due", steady(), issuerDue, []string{
			"new-issuer under r1 active 2026-01-07T00:00:00Z: issuing CA i1 expires at 2026-01-08T00:00:00Z: publishing its successor 24h0m0s before it signs",
		}},
		{"issuer successor pending", func() *state {
			s := steady()
			s.Issuers = append(s.Issuers, &record{ID: "i2", Parent: "r1", Created: issuerDue, ActivateAt: issuerDue.Add(cfg.PublishLead), NotAfter: issuerDue.Add(cfg.IssuerTTL)})
			return s
		}(), issuerDue.Add(time.Minute), nil},
		{"CA was down: pending successor signs at once", func() *state {
			s := steady()
			s.Issuers = []*record{{ID: "i2", Parent: "r1", Created: iss.NotAfter.Add(-time.Hour), ActivateAt: iss.NotAfter.Add(time.Hour), NotAfter: iss.NotAfter.Add(cfg.IssuerTTL)}}
			return s
		}(), iss.NotAfter, []string{
			"drop j1: JWT key j1 expired at 2026-01-08T00:00:00Z",
			"activate i2: no issuing CA signs now: activating i2 before its time 2026-01-08T01:00:00Z",
			"new-jwt-key active 2026-01-08T00:00:00Z: no JWT key is valid: making one that signs at once",
		}},
		{"root successor due", steady(), root.NotAfter.Add(-cfg.IssuerTTL - cfg.RootPublishLead), []string{
			"drop i1: issuing CA i1 expired at 2026-01-08T00:00:00Z",
			"drop j1: JWT key j1 expired at 2026-01-08T00:00:00Z",
			"new-root active 2026-12-25T00:00:00Z: root CA r1 expires at 2027-01-01T00:00:00Z: publishing its successor 720h0m0s before it signs",
			"new-issuer under r1 active 2026-11-25T00:00:00Z: no issuing CA is valid: making one that signs at once",
			"new-jwt-key active 2026-11-25T00:00:00Z: no JWT key is valid: making one that signs at once",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, st := range plan(tc.s, &cfg, tc.now) {
				got = append(got, describe(st))
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("plan =\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}

func describe(st step) string {
	at := st.activateAt.UTC().Format(time.RFC3339)
	switch st.kind {
	case stepDrop:
		return "drop " + st.id + ": " + st.reason
	case stepActivateNow:
		return "activate " + st.id + ": " + st.reason
	case stepNewRoot:
		return "new-root active " + at + ": " + st.reason
	case stepNewIssuer:
		p := st.parent
		if p == "" {
			p = "<new root>"
		}
		return fmt.Sprintf("new-issuer under %s active %s: %s", p, at, st.reason)
	case stepNewJWTKey:
		return "new-jwt-key active " + at + ": " + st.reason
	}
	return "?"
}

// A JWT-SVID whose aud is a string, as RFC 7519 allows for one audience
// (go-jose writes it so, and other issuers do), still validates.
func TestValidateJWTSVIDReadsAudAsAString(t *testing.T) {
	c := testCA(t, nil)
	now := time.Now()
	key := c.snap.Load().activeJWTKey(now)
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key.signer, KeyID: key.ID}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	token, err := jwt.Signed(sig).Claims(jwt.Claims{
		Subject: "spiffe://cluster.local/ns/shop/sa/cart", Audience: jwt.Audience{"payments"},
		Expiry: jwt.NewNumericDate(now.Add(time.Minute)), IssuedAt: jwt.NewNumericDate(now),
	}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	if payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[1]); !strings.Contains(string(payload), `"aud":"payments"`) {
		t.Fatalf("the test token's aud is not a string: %s", payload)
	}
	got, err := c.ValidateJWTSVID(token, "payments")
	if err != nil || !slices.Equal(got.Audience, []string{"payments"}) {
		t.Errorf("ValidateJWTSVID: %v, %v; want audience [payments]", got, err)
	}
	if _, err := jwtsvid.ParseAndValidate(token, c.Bundle(), []string{"payments"}); err != nil {
		t.Errorf("go-spiffe: %v", err)
	}
}
