package workloadapi

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"kzero.dev/kzero/internal/ca/catest"
)

// newTestCache is a cache over the real CA, with a settable clock, swept
// by the test only.
func newTestCache(t testing.TB) (*cache, *caSigner, *catest.Clock) {
	t.Helper()
	clk := catest.NewClock(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC))
	signer := &caSigner{ca: newCA(t, td, clk.Now)}
	c := newCache(t.Context(), &Config{
		Signer: signer, Now: clk.Now, Idle: DefaultIdle, SignTimeout: DefaultSignTimeout, Log: slog.New(slog.DiscardHandler),
	})
	return c, signer, clk
}

func mustGet(t *testing.T, c *cache, id spiffeid.ID) (*issued, <-chan struct{}) {
	t.Helper()
	s, changed, err := c.get(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return s, changed
}

func TestCacheDropsWhatNobodyUses(t *testing.T) {
	c, signer, clk := newTestCache(t)
	first, _ := mustGet(t, c, webID)
	if again, _ := mustGet(t, c, webID); again != first || signer.x509.Load() != 1 {
		t.Fatalf("a cached SVID was signed again (%d signatures)", signer.x509.Load())
	}

	// Watched: kept however long.
	release := c.watch(webID)
	clk.Add(DefaultIdle + time.Minute)
	c.sweep(t.Context())
	if _, ok := c.entries[webID]; !ok {
		t.Fatal("dropped while a stream watches it")
	}
	// Unwatched: kept for Idle after the stream ends, then dropped.
	release()
	clk.Add(DefaultIdle - time.Second)
	c.sweep(t.Context())
	if _, ok := c.entries[webID]; !ok {
		t.Fatal("dropped before it was idle for long")
	}
	clk.Add(time.Second)
	c.sweep(t.Context())
	if _, ok := c.entries[webID]; ok {
		t.Fatal("kept after it was idle for long")
	}
	if next, _ := mustGet(t, c, webID); next == first || signer.x509.Load() != 2 {
		t.Fatal("a dropped SVID was served again")
	}
}

// waitFlight waits for the signature under way for id, if any.
func waitFlight(t *testing.T, c *cache, id spiffeid.ID) {
	t.Helper()
	c.mu.Lock()
	f := c.entries[id].flight
	c.mu.Unlock()
	if f != nil {
		within(t, f.done, "signature")
	}
}

func TestCacheRenewsAtHalfLifeAndBacksOffAfterFailures(t *testing.T) {
	c, signer, clk := newTestCache(t)
	release := c.watch(webID)
	defer release()
	first, changed := mustGet(t, c, webID)
	if want := first.notAfter.Add(-30 * time.Minute); !first.renewAt.Equal(want) {
		// Half of what is left of it when it arrives: the CA backdates
		// NotBefore by 30 s, which is no time the agent had it.
		t.Fatalf("renewAt %s, want %s", first.renewAt, want)
	}

	// Before half life: nothing.
	clk.Add(first.renewAt.Sub(clk.Now()) - time.Second)
	c.sweep(t.Context())
	waitFlight(t, c, webID)
	if signer.x509.Load() != 1 {
		t.Fatal("renewed before half life")
	}

	// From half life on, with the authority down: the current SVID
	// stays, and retries wait 1 s, then 2 s.
	signer.failWith(errors.New("authority unreachable"))
	clk.Add(time.Second)
	for i, wait := range []time.Duration{0, time.Second, 2 * time.Second} {
		clk.Add(wait - time.Millisecond)
		c.sweep(t.Context())
		waitFlight(t, c, webID)
		if c.entries[webID].failures != i {
			t.Fatalf("retry %d came %s early", i, time.Millisecond)
		}
		clk.Add(time.Millisecond)
		c.sweep(t.Context())
		waitFlight(t, c, webID)
		if c.entries[webID].failures != i+1 {
			t.Fatalf("retry %d did not come after %s", i, wait)
		}
		if s, _ := mustGet(t, c, webID); s != first {
			t.Fatal("the current SVID was not served while renewal failed")
		}
	}
	select {
	case <-changed:
		t.Fatal("streams were told of a change that did not happen")
	default:
	}

	// The authority is back.
	signer.failWith(nil)
	clk.Add(4 * time.Second)
	c.sweep(t.Context())
	within(t, changed, "renewal")
	next, _ := mustGet(t, c, webID)
	if next == first || bytes.Equal(next.key, first.key) || signer.x509.Load() != 2 {
		t.Fatalf("not renewed with a new key (%d signatures)", signer.x509.Load())
	}
	if c.entries[webID].failures != 0 {
		t.Fatal("failures not reset")
	}
}

func TestCacheSignsAgainForAnExpiredSVID(t *testing.T) {
	c, signer, clk := newTestCache(t)
	first, _ := mustGet(t, c, webID)
	// The authority was down past the SVID's end: a caller must not get it.
	clk.Add(first.notAfter.Sub(clk.Now()))
	next, _ := mustGet(t, c, webID)
	if next == first || signer.x509.Load() != 2 {
		t.Fatal("an expired SVID was served")
	}
}

// badSigner answers with a chain chain makes of the CSR it is given.
type badSigner struct {
	caSigner
	chain func(t *testing.T, csr []byte) [][]byte
	t     *testing.T
}

func (s *badSigner) SignX509SVID(_ context.Context, _ spiffeid.ID, csr []byte) ([][]byte, error) {
	return s.chain(s.t, csr), nil
}

func TestCacheRefusesWhatIsNotAnSVIDForItsKey(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name  string
		chain func(t *testing.T, csr []byte) [][]byte
		want  string
	}{
		{
			name:  "nothing",
			chain: func(*testing.T, []byte) [][]byte { return nil },
			want:  "workloadapi: the signer's answer for spiffe://cluster.local/ns/app/sa/web is not an X.509-SVID for the agent's key: x509svid: certificate validation failed: no certificates found",
		},
		{
			name:  "garbage",
			chain: func(*testing.T, []byte) [][]byte { return [][]byte{[]byte("garbage")} },
			want:  "workloadapi: the signer's answer for spiffe://cluster.local/ns/app/sa/web is not an X.509-SVID for the agent's key: x509svid: cannot parse DER encoded certificate: x509: malformed certificate",
		},
		{
			name: "another key",
			chain: func(t *testing.T, _ []byte) [][]byte {
				_, csr := catest.NewCSR(t)
				return issue(t, now, csr)
			},
			want: "workloadapi: the signer's answer for spiffe://cluster.local/ns/app/sa/web is not an X.509-SVID for the agent's key: x509svid: private key validation failed: leaf certificate does not match private key",
		},
		{
			name:  "expired",
			chain: func(t *testing.T, csr []byte) [][]byte { return issue(t, now.Add(-2*time.Hour), csr) },
			want:  "workloadapi: the signer's X.509-SVID for spiffe://cluster.local/ns/app/sa/web expired at 2026-01-01T11:00:00Z (is the agent's clock right?)",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCache(t.Context(), &Config{
				Signer: &badSigner{chain: tc.chain, t: t}, Now: func() time.Time { return now },
				Idle: DefaultIdle, SignTimeout: DefaultSignTimeout, Log: slog.New(slog.DiscardHandler),
			})
			_, _, err := c.get(t.Context(), webID)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("got  %v\nwant %s", err, tc.want)
			}
		})
	}
}

// issue has a CA whose clock reads at sign csr for webID.
func issue(t *testing.T, at time.Time, csr []byte) [][]byte {
	t.Helper()
	s := &caSigner{ca: newCA(t, td, func() time.Time { return at })}
	chain, err := s.SignX509SVID(t.Context(), webID, csr)
	if err != nil {
		t.Fatal(err)
	}
	return chain
}

// A certificate backdated for clock skew is renewed half way through the
// time the agent has it, not half way through its life from NotBefore,
// which may be past already.
func TestRenewAt(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name              string
		notBefore, expiry time.Duration // from now
		want              time.Duration
	}{
		{"backdated 30 s", -30 * time.Second, time.Hour, 30 * time.Minute},
		{"backdated past half its life", -5 * time.Minute, time.Minute, 30 * time.Second},
		{"not yet valid", time.Minute, 3 * time.Minute, 2 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leaf := &x509.Certificate{NotBefore: now.Add(tc.notBefore), NotAfter: now.Add(tc.expiry)}
			if got := RenewAt(leaf, now).Sub(now); got != tc.want {
				t.Errorf("RenewAt = now+%s, want now+%s", got, tc.want)
			}
		})
	}
}
