package ca_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"kzero.dev/kzero/internal/ca"
	"kzero.dev/kzero/internal/ca/catest"
)

// TestRotationKeepsEveryLeafVerifiable walks the CA through many issuing-CA
// rotations and a root rotation at 1-minute steps. At every step every
// unexpired leaf issued so far must verify, with go-spiffe, against the
// bundle published now and against the bundle a peer fetched one refresh
// hint ago; no leaf may outlive the CA that signed it, nor an issuing CA its
// root; and the bundle's sequence number may only grow.
func TestRotationKeepsEveryLeafVerifiable(t *testing.T) {
	start := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	clk := newClock(start)
	cfg := ca.Config{
		RootTTL: 6 * time.Hour, RootPublishLead: 40 * time.Minute,
		IssuerTTL: time.Hour, PublishLead: 10 * time.Minute,
		X509SVIDTTL: 5 * time.Minute, X509SVIDMaxTTL: 15 * time.Minute,
		JWTKeyTTL: time.Hour, JWTSVIDTTL: 5 * time.Minute, JWTSVIDMaxTTL: 10 * time.Minute,
		RefreshHint: 5 * time.Minute,
		Now:         clk.Now,
	}
	store := catest.NewMemStore(nil)
	cfg.Store = store
	c := newCA(t, cfg)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))

	type issued struct {
		svid *ca.X509SVID
		jwt  *ca.JWTSVID
	}
	var leaves []issued
	var history []*spiffebundle.Bundle // published bundle at each step
	issuers := map[string]bool{}
	roots := map[string]bool{}
	lastSeq := uint64(0)
	lastDoc := ""
	const steps = 7 * 60
	staleBy := int(cfg.RefreshHint / time.Minute)
	crossVerified := 0

	for step := 0; step <= steps; step++ {
		now := clk.Now()
		if rep, err := c.Rotate(ctx); err != nil {
			t.Fatalf("step %d: Rotate: %v", step, err)
		} else if len(rep.Steps) > 0 {
			t.Logf("t+%s: %s", now.Sub(start), strings.Join(rep.Steps, "; "))
		}
		b := publishedBundle(t, c)
		seq, _ := b.SequenceNumber()
		doc := bundleContent(b)
		switch {
		case seq < lastSeq:
			t.Fatalf("step %d: sequence went down from %d to %d", step, lastSeq, seq)
		case seq == lastSeq && lastDoc != "" && doc != lastDoc:
			t.Fatalf("step %d: bundle changed but sequence stayed %d", step, seq)
		}
		lastSeq, lastDoc = seq, doc
		history = append(history, b)
		for _, a := range b.X509Authorities() {
			if bytes.Equal(a.RawIssuer, a.RawSubject) {
				roots[string(a.Raw)] = true
			}
		}

		ttl := time.Duration(1+rng.IntN(15)) * time.Minute
		svid, err := c.IssueX509SVID(ca.X509Request{ID: mustID(t, "spiffe://cluster.local/ns/walk/sa/step"), CSR: csrFor(t, p256(t), nil), TTL: ttl})
		if err != nil {
			t.Fatalf("step %d: IssueX509SVID: %v", step, err)
		}
		jwtSVID, err := c.IssueJWTSVID(ca.JWTRequest{ID: svid.ID, Audience: []string{"peer"}, TTL: time.Duration(1+rng.IntN(10)) * time.Minute})
		if err != nil {
			t.Fatalf("step %d: IssueJWTSVID: %v", step, err)
		}
		leaves = append(leaves, issued{svid, jwtSVID})
		issuers[string(svid.Chain[1])] = true

		stale := history[max(0, len(history)-1-staleBy)]
		// A peer that fetched only the first root and never refreshed:
		// cross-signing keeps everything verifiable for it while that root
		// lives.
		firstRoots := selfSigned(history[0])
		live := leaves[:0]
		for _, l := range leaves {
			if !now.Before(l.svid.NotAfter) {
				continue
			}
			live = append(live, l)
			leaf, signer := l.svid.Certificates[0], l.svid.Certificates[1]
			if leaf.NotAfter.After(signer.NotAfter) {
				t.Fatalf("step %d: leaf expires %s, after its issuing CA %s", step, leaf.NotAfter, signer.NotAfter)
			}
			if root := rootOf(b, signer); root == nil {
				t.Fatalf("step %d: the root of issuing CA %s is not published", step, signer.Subject.CommonName)
			} else if signer.NotAfter.After(root.NotAfter) {
				t.Fatalf("step %d: issuing CA expires %s, after its root %s", step, signer.NotAfter, root.NotAfter)
			}
			if now.Before(firstRoots[0].NotAfter) {
				if _, _, err := x509svid.Verify(l.svid.Certificates, x509bundle.FromX509Authorities(td, firstRoots), x509svid.WithTime(now)); err != nil {
					t.Fatalf("step %d (%s): leaf by %s does not verify for a peer holding only the first root: %v",
						step, now.Sub(start), signer.Subject.CommonName, err)
				}
				if len(l.svid.Chain) == 3 {
					crossVerified++
				}
			}
			for name, bundle := range map[string]*spiffebundle.Bundle{"current": b, "stale": stale} {
				if _, _, err := x509svid.Verify(l.svid.Certificates, bundle, x509svid.WithTime(now)); err != nil {
					t.Fatalf("step %d (%s): leaf issued at %s by %s does not verify against the %s bundle: %v",
						step, now.Sub(start), l.svid.NotBefore.Sub(start), signer.Subject.CommonName, name, err)
				}
				if l.jwt.Expiry.After(now) {
					checkJWTSignature(t, step, name, l.jwt, bundle)
				}
			}
		}
		leaves = live
		clk.Add(time.Minute)
	}
	if crossVerified == 0 {
		t.Error("no leaf under the second root was verified through its cross certificate")
	}
	if n := len(issuers); n < 4 {
		t.Errorf("saw %d issuing CAs sign leaves, want at least 4 (three rotations)", n)
	}
	if n := len(roots); n < 2 {
		t.Errorf("saw %d roots, want at least 2 (one rotation)", n)
	}
	t.Logf("%d steps: %d issuing CAs signed, %d roots published, %d leaves verified through a cross certificate, %d saves, final sequence %d",
		steps, len(issuers), len(roots), crossVerified, store.Saves(), lastSeq)
}

// bundleContent returns the authorities of b in a canonical form
// (Marshal's order of JWT keys varies).
func bundleContent(b *spiffebundle.Bundle) string {
	var parts []string
	for _, a := range b.X509Authorities() {
		parts = append(parts, string(a.Raw))
	}
	for kid := range b.JWTAuthorities() {
		parts = append(parts, kid)
	}
	sort.Strings(parts)
	return strings.Join(parts, "\x00")
}

// selfSigned returns the roots among b's authorities.
func selfSigned(b *spiffebundle.Bundle) []*x509.Certificate {
	var out []*x509.Certificate
	for _, a := range b.X509Authorities() {
		if bytes.Equal(a.RawIssuer, a.RawSubject) {
			out = append(out, a)
		}
	}
	return out
}

// rootOf returns the self-signed authority of b that signed cert.
func rootOf(b *spiffebundle.Bundle, cert *x509.Certificate) *x509.Certificate {
	for _, a := range b.X509Authorities() {
		if bytes.Equal(a.RawIssuer, a.RawSubject) && cert.CheckSignatureFrom(a) == nil {
			return a
		}
	}
	return nil
}

// checkJWTSignature verifies a JWT-SVID's signature with the key its kid
// names in bundle. (Time is checked by TestJWTSVID with the real clock:
// go-spiffe's jwtsvid validates against time.Now.)
func checkJWTSignature(t *testing.T, step int, name string, s *ca.JWTSVID, b *spiffebundle.Bundle) {
	t.Helper()
	key, ok := b.FindJWTAuthority(s.KeyID)
	if !ok {
		t.Fatalf("step %d: JWT key %s of a live JWT-SVID is not in the %s bundle", step, s.KeyID, name)
	}
	tok, err := jwt.ParseSigned(s.Token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	var claims jwt.Claims
	if err := tok.Claims(key, &claims); err != nil {
		t.Fatalf("step %d: JWT-SVID does not verify with the %s bundle: %v", step, name, err)
	}
}
