package workloadapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"

	"kzero.dev/kzero/internal/ca"
	"kzero.dev/kzero/internal/ca/catest"
)

// 1,000 FetchJWTSVID calls of go-spiffe's client for one audience set, in
// any order and with repeats, cost the authority one signature.
func TestThousandFetchJWTSVIDCostOneSignature(t *testing.T) {
	e := start(t, nil)
	c := e.client(t)
	params := []jwtsvid.Params{
		{Audience: audience, ExtraAudiences: []string{"other"}},
		{Audience: "other", ExtraAudiences: []string{audience}},
		{Audience: audience, ExtraAudiences: []string{"other", audience, "other"}},
	}
	var first string
	for i := range 1000 {
		svid, err := c.FetchJWTSVID(t.Context(), params[i%len(params)])
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if i == 0 {
			first = svid.Marshal()
		} else if svid.Marshal() != first {
			t.Fatalf("call %d got another token", i)
		}
	}
	if n := e.signer.jwt.Load(); n != 1 {
		t.Fatalf("%d JWT signatures for 1,000 calls, want 1", n)
	}
	// Another audience set is another JWT-SVID.
	if _, err := c.FetchJWTSVID(t.Context(), jwtsvid.Params{Audience: audience}); err != nil {
		t.Fatal(err)
	}
	if n := e.signer.jwt.Load(); n != 2 {
		t.Fatalf("%d JWT signatures, want 2", n)
	}
}

// Callers of one key that arrive while its signature is under way wait for
// that one.
func TestBurstOfJWTCallersCostsOneSignature(t *testing.T) {
	const callers = 50
	gate := make(chan struct{})
	var attested atomic.Int64
	e := start(t, func(c *Config) {
		// The signature waits until every caller has been attested, so
		// that all of them ask while it is under way.
		c.Attestor = AttestorFunc(func(ctx context.Context, cl Caller) (spiffeid.ID, error) {
			if attested.Add(1) == callers {
				close(gate)
			}
			return selfAttestor(ctx, cl)
		})
	})
	e.signer.jwtGate = gate
	c := e.client(t)
	tokens := make([]string, callers)
	var wg sync.WaitGroup
	for i := range tokens {
		wg.Go(func() {
			svid, err := c.FetchJWTSVID(t.Context(), jwtsvid.Params{Audience: audience})
			if err != nil {
				t.Errorf("caller %d: %v", i, err)
				return
			}
			tokens[i] = svid.Marshal()
		})
	}
	wg.Wait()
	for i, tok := range tokens {
		if tok != tokens[0] {
			t.Fatalf("caller %d got another token", i)
		}
	}
	if n := e.signer.jwt.Load(); n != 1 {
		t.Fatalf("%d JWT signatures for %d concurrent calls, want 1", n, callers)
	}
}

// newTestJWTCache is a JWT cache over the real CA, on a settable clock.
func newTestJWTCache(t testing.TB) (*jwtCache, *caSigner, *catest.Clock) {
	t.Helper()
	clk := catest.NewClock(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC))
	signer := &caSigner{ca: newCA(t, td, clk.Now)}
	return newJWTCache(t.Context(), &Config{Signer: signer, Now: clk.Now, SignTimeout: DefaultSignTimeout, Log: slog.New(slog.DiscardHandler)}), signer, clk
}

func mustGetJWT(t *testing.T, c *jwtCache, id spiffeid.ID, aud ...string) string {
	t.Helper()
	tok, err := c.get(t.Context(), id, aud)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// A JWT-SVID is served until half its life (2.5 min of the default 5),
// counted from when the agent got it, then signed again.
func TestJWTSVIDIsCachedUntilHalfItsLife(t *testing.T) {
	c, signer, clk := newTestJWTCache(t)
	first := mustGetJWT(t, c, webID, audience)
	clk.Add(ca.DefaultJWTSVIDTTL/2 - time.Second)
	if again := mustGetJWT(t, c, webID, audience); again != first || signer.jwt.Load() != 1 {
		t.Fatalf("signed again before half its life (%d signatures)", signer.jwt.Load())
	}
	clk.Add(time.Second)
	if next := mustGetJWT(t, c, webID, audience); next == first || signer.jwt.Load() != 2 {
		t.Fatalf("served past half its life (%d signatures)", signer.jwt.Load())
	}
	// The sweep drops what is past half its life.
	clk.Add(ca.DefaultJWTSVIDTTL / 2)
	c.sweep()
	if len(c.entries) != 0 || len(c.perID) != 0 {
		t.Fatalf("after the sweep: %d entries, %d IDs", len(c.entries), len(c.perID))
	}
}

// The cache is bounded per ID and in all: a new entry pushes out the
// oldest.
func TestJWTCacheIsBounded(t *testing.T) {
	c, signer, clk := newTestJWTCache(t)
	for i := range maxJWTPerID + 1 {
		mustGetJWT(t, c, webID, fmt.Sprint("aud-", i))
		clk.Add(time.Second / jwtSignRate) // within the ID's rate of signatures
	}
	if n := c.perID[webID]; n != maxJWTPerID || len(c.entries) != maxJWTPerID {
		t.Fatalf("%d entries of %s (%d in all), want %d", n, webID, len(c.entries), maxJWTPerID)
	}
	signed := signer.jwt.Load()
	mustGetJWT(t, c, webID, "aud-1") // still there
	mustGetJWT(t, c, webID, "aud-0") // pushed out: signed again, and pushes out aud-1
	if n := signer.jwt.Load() - signed; n != 1 {
		t.Fatalf("%d signatures, want 1: the oldest of the ID, and it only, goes", n)
	}

	// Across IDs: maxJWT in all, the oldest first.
	ids := maxJWT/maxJWTPerID + 1
	for i := range ids {
		id := spiffeid.RequireFromPath(td, fmt.Sprintf("/ns/app/sa/sa-%03d", i))
		for j := range maxJWTPerID {
			mustGetJWT(t, c, id, fmt.Sprint("aud-", j))
			clk.Add(time.Millisecond)
		}
	}
	if len(c.entries) != maxJWT {
		t.Fatalf("%d entries, want %d", len(c.entries), maxJWT)
	}
	if n := c.perID[webID]; n != 0 {
		t.Fatalf("%s, the oldest, still has %d entries", webID, n)
	}
	total := 0
	for _, n := range c.perID {
		total += n
	}
	if total != maxJWT {
		t.Fatalf("the counts per ID add up to %d, not %d", total, maxJWT)
	}
}

// A JWT-SVID over maxCachedJWT (many long audiences) is served, not kept.
func TestLongJWTSVIDIsNotCached(t *testing.T) {
	c, signer, _ := newTestJWTCache(t)
	aud := make([]string, 8)
	for i := range aud {
		aud[i] = fmt.Sprint(i) + strings.Repeat("a", 1000)
	}
	for range 2 {
		if tok := mustGetJWT(t, c, webID, aud...); len(tok) <= maxCachedJWT {
			t.Fatalf("a token of %d bytes: the test wants one over %d", len(tok), maxCachedJWT)
		}
	}
	if n := signer.jwt.Load(); n != 2 || len(c.entries) != 0 {
		t.Fatalf("%d signatures, %d entries: a long token was cached", n, len(c.entries))
	}
}

// A failure is not cached: the next caller asks again.
func TestJWTCacheKeepsNoFailure(t *testing.T) {
	c, signer, _ := newTestJWTCache(t)
	signer.failWith(fmt.Errorf("authority unreachable"))
	if _, err := c.get(t.Context(), webID, []string{audience}); err == nil ||
		err.Error() != "workloadapi: JWT-SVID for spiffe://cluster.local/ns/app/sa/web: authority unreachable" {
		t.Fatalf("got %v", err)
	}
	signer.failWith(nil)
	mustGetJWT(t, c, webID, audience)
	if n := signer.jwt.Load(); n != 1 {
		t.Fatalf("%d signatures, want 1", n)
	}
}

// jwtSigner answers every JWT-SVID request with what token makes.
type jwtSigner struct {
	caSigner
	token func(t *testing.T) string
	t     *testing.T
}

func (s *jwtSigner) SignJWTSVID(context.Context, spiffeid.ID, []string) (string, error) {
	return s.token(s.t), nil
}

func TestJWTCacheRefusesWhatIsNotAJWTSVIDForTheRequest(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	sign := func(at time.Time, id spiffeid.ID, aud ...string) func(t *testing.T) string {
		return func(t *testing.T) string {
			s, err := newCA(t, td, func() time.Time { return at }).IssueJWTSVID(ca.JWTRequest{ID: id, Audience: aud})
			if err != nil {
				t.Fatal(err)
			}
			return s.Token
		}
	}
	for _, tc := range []struct {
		name  string
		token func(t *testing.T) string
		want  string
	}{
		{"garbage", func(*testing.T) string { return "x.y.z" },
			"workloadapi: the signer's JWT-SVID for spiffe://cluster.local/ns/app/sa/web does not parse: illegal base64 data at input byte 0"},
		{"another ID", sign(now, spiffeid.RequireFromString("spiffe://cluster.local/ns/app/sa/db"), audience),
			`workloadapi: the signer's JWT-SVID is for "spiffe://cluster.local/ns/app/sa/db" when asked for spiffe://cluster.local/ns/app/sa/web`},
		{"another audience", sign(now, webID, "other"),
			"workloadapi: the signer's JWT-SVID for spiffe://cluster.local/ns/app/sa/web is not for every audience asked"},
		{"expired", sign(now.Add(-time.Hour), webID, audience),
			"workloadapi: the signer's JWT-SVID for spiffe://cluster.local/ns/app/sa/web expired at 2026-01-01T11:05:00Z (is the agent's clock right?)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newJWTCache(t.Context(), &Config{
				Signer: &jwtSigner{token: tc.token, t: t}, Now: func() time.Time { return now },
				SignTimeout: DefaultSignTimeout, Log: slog.New(slog.DiscardHandler),
			})
			_, err := c.get(t.Context(), webID, []string{audience})
			if err == nil || err.Error() != tc.want {
				t.Fatalf("got  %v\nwant %s", err, tc.want)
			}
			if len(c.entries) != 0 {
				t.Fatal("kept")
			}
		})
	}
}

func TestAudienceKeyIsOneSetOneKey(t *testing.T) {
	for _, tc := range []struct{ a, b []string }{
		{[]string{"a", "b"}, []string{"a:b"}},
		{[]string{"1:a"}, []string{"1", "a"}},
		{[]string{"ab"}, []string{"a", "b"}},
	} {
		if audienceKey(tc.a) == audienceKey(tc.b) {
			t.Errorf("%q and %q make the same key %q", tc.a, tc.b, audienceKey(tc.a))
		}
	}
	if audienceKey(unique([]string{"b", "a", "b"})) != audienceKey([]string{"a", "b"}) {
		t.Error("one set, in another order and with a repeat, makes another key")
	}
}

// One ID gets jwtSignBurst new JWT-SVIDs at once, then jwtSignRate a
// second: a workload asking for new audiences without end cannot take
// the node's share of the authority's signatures. Cached ones are served
// all the same, and another ID has a bucket of its own.
func TestJWTCacheRateOfSignatures(t *testing.T) {
	c, signer, clk := newTestJWTCache(t)
	for i := range jwtSignBurst {
		mustGetJWT(t, c, webID, fmt.Sprint("aud-", i))
	}
	if _, err := c.get(t.Context(), webID, []string{"one-more"}); !errors.Is(err, errJWTRate) {
		t.Fatalf("a new JWT-SVID over the burst: %v, want errJWTRate", err)
	}
	if signer.jwt.Load() != jwtSignBurst {
		t.Errorf("%d signatures, want %d", signer.jwt.Load(), jwtSignBurst)
	}
	mustGetJWT(t, c, webID, "aud-0") // cached
	other := spiffeid.RequireFromPath(td, "/ns/app/sa/other")
	mustGetJWT(t, c, other, "one-more")
	clk.Add(time.Second / jwtSignRate)
	mustGetJWT(t, c, webID, "one-more")
	// The sweep drops the buckets that are full again, and them only.
	c.sweep()
	if _, ok := c.signs[other]; ok {
		t.Errorf("the sweep kept %s's bucket, full again", other)
	}
	if _, ok := c.signs[webID]; !ok {
		t.Errorf("the sweep dropped %s's bucket, not full yet", webID)
	}
}
