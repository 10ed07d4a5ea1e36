package ca_test

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"kzero.dev/kzero/internal/ca"
	"kzero.dev/kzero/internal/ca/catest"
)

// shortSchedule is the rotation test's schedule: hours, not months.
func shortSchedule(now func() time.Time, store ca.Store) ca.Config {
	return ca.Config{
		RootTTL: 6 * time.Hour, RootPublishLead: 40 * time.Minute,
		IssuerTTL: time.Hour, PublishLead: 10 * time.Minute,
		X509SVIDTTL: 5 * time.Minute, X509SVIDMaxTTL: 15 * time.Minute,
		JWTKeyTTL: time.Hour, JWTSVIDTTL: 5 * time.Minute, JWTSVIDMaxTTL: 10 * time.Minute,
		RefreshHint: 5 * time.Minute,
		Now:         now, Store: store, TrustDomain: td,
	}
}

// TestRecoversFromAnyOutage stops the CA for random stretches, across
// issuing-CA and root rotations, and restarts it from its store. After
// every restart and at every later minute the stored state must load again,
// and the CA must issue SVIDs that verify against its bundle.
func TestRecoversFromAnyOutage(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	id := mustID(t, "spiffe://cluster.local/ns/down/sa/time")
	csr := csrFor(t, p256(t), nil)
	for run := 0; run < 25; run++ {
		start := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
		clk := newClock(start)
		store := catest.NewMemStore(nil)
		downAt := time.Duration(rng.IntN(7*60)) * time.Minute
		downFor := time.Duration(1+rng.IntN(8*60)) * time.Minute
		c := newCA(t, shortSchedule(clk.Now, store))
		for clk.Now().Sub(start) < downAt+downFor+2*time.Hour {
			if el := clk.Now().Sub(start); el >= downAt && el < downAt+downFor {
				clk.Add(time.Minute) // down: nothing runs
				continue
			} else if el == downAt+downFor {
				var err error
				if c, err = ca.New(context.Background(), shortSchedule(clk.Now, store)); err != nil {
					t.Fatalf("down %s for %s: restart at t+%s: %v", downAt, downFor, el, err)
				}
			}
			if _, err := c.Rotate(context.Background()); err != nil {
				t.Fatalf("down %s for %s: Rotate at t+%s: %v", downAt, downFor, clk.Now().Sub(start), err)
			}
			if _, err := ca.New(context.Background(), shortSchedule(clk.Now, catest.NewMemStore(store.Doc()))); err != nil {
				t.Fatalf("down %s for %s: the state saved at t+%s does not load: %v", downAt, downFor, clk.Now().Sub(start), err)
			}
			svid, err := c.IssueX509SVID(ca.X509Request{ID: id, CSR: csr})
			if err != nil {
				t.Fatalf("down %s for %s: IssueX509SVID at t+%s: %v", downAt, downFor, clk.Now().Sub(start), err)
			}
			if _, _, err := x509svid.Verify(svid.Certificates, c.Bundle(), x509svid.WithTime(clk.Now())); err != nil {
				t.Fatalf("down %s for %s: leaf at t+%s does not verify: %v", downAt, downFor, clk.Now().Sub(start), err)
			}
			if svid.NotAfter.Sub(clk.Now()) < 5*time.Minute {
				t.Fatalf("down %s for %s: leaf at t+%s cut short to %s", downAt, downFor, clk.Now().Sub(start), svid.NotAfter.Sub(clk.Now()))
			}
			clk.Add(time.Minute)
		}
	}
}

// TestNextIsAlwaysAhead runs the CA the way a controller would, calling
// Rotate when Next says, for sixty days of the default schedule.
func TestNextIsAlwaysAhead(t *testing.T) {
	clk := newClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	c := newCA(t, ca.Config{Now: clk.Now})
	end := clk.Now().Add(60 * 24 * time.Hour)
	calls := 0
	for clk.Now().Before(end) {
		next := c.Next()
		if !next.After(clk.Now()) || next.Sub(clk.Now()) > 10*time.Minute {
			t.Fatalf("at %s Next() = %s: want after now and at most 10 minutes away", clk.Now(), next)
		}
		clk.Add(next.Sub(clk.Now()))
		rep, err := c.Rotate(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !rep.Next.After(clk.Now()) {
			t.Fatalf("RotationReport.Next = %s, not after now %s", rep.Next, clk.Now())
		}
		calls++
	}
	t.Logf("%d Rotate calls in 60 days", calls)
}

func TestClockBehindTheState(t *testing.T) {
	clk := newClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	store := catest.NewMemStore(nil)
	c := newCA(t, ca.Config{Store: store, Now: clk.Now})
	saved := string(store.Doc())
	clk.Add(-time.Hour)
	_, err := c.Rotate(context.Background())
	if err == nil || !strings.Contains(err.Error(), "the clock is behind the CA's state; fix the clock (NTP) and the CA resumes by itself") {
		t.Fatalf("Rotate with the clock an hour back: %v", err)
	}
	if string(store.Doc()) != saved {
		t.Error("Rotate saved a state while the clock was behind it")
	}
	_, err = c.IssueX509SVID(ca.X509Request{ID: mustID(t, "spiffe://cluster.local/a"), CSR: csrFor(t, p256(t), nil)})
	if !errorIs(err, ca.ErrNoAuthority) {
		t.Fatalf("IssueX509SVID with the clock an hour back: %v, want ErrNoAuthority", err)
	}
	clk.Add(time.Hour)
	if _, err := c.Rotate(context.Background()); err != nil {
		t.Fatalf("Rotate once the clock is right again: %v", err)
	}
}

func TestRefusesForgeableAndOddKeys(t *testing.T) {
	c := newCA(t, ca.Config{})
	id := mustID(t, "spiffe://cluster.local/a")
	// The identity point of edwards25519 and a signature with R the
	// identity and S zero: it verifies for every message.
	identity := make([]byte, ed25519.PublicKeySize)
	identity[0] = 1
	pkixIdentity, err := x509.MarshalPKIXPublicKey(ed25519.PublicKey(identity))
	if err != nil {
		t.Fatal(err)
	}
	forged := append(append([]byte{}, identity...), make([]byte, 32)...)
	if !ed25519.Verify(identity, []byte("pod-uid"), forged) {
		t.Fatal("the forged signature should verify with Go's ed25519: the premise of this test")
	}
	// A SAN of a type Go's CSR parser does not surface: registeredID.
	oid, _ := asn1.Marshal(asn1.ObjectIdentifier{1, 2, 3, 4})
	san, _ := asn1.Marshal([]asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 8, Bytes: oid[2:]}})
	for _, tc := range []struct {
		name    string
		req     ca.X509Request
		wantErr string
		kind    error
	}{
		{"Ed25519 small-order key", ca.X509Request{ID: id, PublicKey: pkixIdentity, ProofOfPossession: forged, PodUID: "pod-uid"},
			"ca: Ed25519 key is a point of small order, for which anyone can forge signatures: generate a real key", ca.ErrUnsupportedKey},
		{"registeredID SAN", ca.X509Request{ID: id, CSR: csrFor(t, p256(t), &x509.CertificateRequest{
			ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 17}, Value: san}}})},
			"ca: the CSR names subject alternative names of other types (otherName, directoryName, registeredID): an X.509-SVID carries only its SPIFFE ID, remove them", ca.ErrExtraSAN},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.IssueX509SVID(tc.req)
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("error =\n  %v\nwant\n  %s", err, tc.wantErr)
			}
			if !errorIs(err, tc.kind) {
				t.Errorf("errors.Is(err, %v) = false", tc.kind)
			}
		})
	}
}
