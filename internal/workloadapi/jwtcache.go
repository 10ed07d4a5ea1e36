package workloadapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/time/rate"
)

// Bounds of the JWT-SVID cache. A JWT-SVID of the default 5 min with one
// audience is about 600 bytes: 1,024 of them take under 1 MiB, and at most
// 8 MiB however large they are.
const (
	// maxJWTPerID is the most JWT-SVIDs kept for one SPIFFE ID (one per
	// audience set); a new one pushes out that ID's oldest.
	maxJWTPerID = 32
	// maxJWT is the most kept in all; a new one pushes out the oldest.
	maxJWT = 1024
	// maxCachedJWT is the longest JWT-SVID kept: a longer one (many long
	// audiences) is served, and signed again next time.
	maxCachedJWT = 8 << 10
	// jwtSignRate and jwtSignBurst bound the new JWT-SVIDs one SPIFFE ID
	// may have signed a second, and at once: the authority limits an
	// agent's signatures, and one workload asking for new audiences
	// without end would otherwise take the node's share from the others.
	jwtSignRate  = 10
	jwtSignBurst = 32
)

// errJWTRate is a cache miss over its ID's rate of signatures.
var errJWTRate = errors.New("workloadapi: over the rate of new JWT-SVIDs")

// jwtAlgorithms are those of the JWT-SVID standard, which a token from
// the Signer must have to be parsed.
var jwtAlgorithms = []jose.SignatureAlgorithm{
	jose.ES256, jose.ES384, jose.ES512,
	jose.RS256, jose.RS384, jose.RS512,
	jose.PS256, jose.PS384, jose.PS512,
}

// jwtCache holds JWT-SVIDs per SPIFFE ID and audience set (in any order,
// each value once) until half their life, as SPIRE's agent does: every
// FetchJWTSVID would otherwise cost the authority a signature. Callers of
// a key that arrive while its signature is under way wait for the same
// one. It is safe for concurrent use.
type jwtCache struct {
	signer      Signer
	now         func() time.Time
	signTimeout time.Duration
	log         *slog.Logger
	// ctx is the server's run: a signature outlives the request that
	// started it (others may wait for it), not the server.
	ctx context.Context

	mu      sync.Mutex
	entries map[jwtKey]*jwtEntry  // guarded by mu
	perID   map[spiffeid.ID]int   // guarded by mu: entries of each ID
	flights map[jwtKey]*jwtFlight // guarded by mu: signatures under way
	// signs limits each ID's signatures; an ID's bucket goes once full.
	signs map[spiffeid.ID]*rate.Limiter // guarded by mu
	// flying counts the signatures under way, for wait.
	flying sync.WaitGroup
}

// jwtKey names a JWT-SVID: its ID and its audience set, sorted, each
// value once and prefixed with its length (so that no two sets make the
// same key).
type jwtKey struct {
	id       spiffeid.ID
	audience string
}

// jwtEntry is a cached JWT-SVID. It never changes.
type jwtEntry struct {
	token    string
	received time.Time // when the Signer gave it: the oldest goes first
	renewAt  time.Time // half way through its life: served until then
}

// jwtFlight is one signature; done is closed when token or err is set.
type jwtFlight struct {
	done  chan struct{}
	token string
	err   error
}

func newJWTCache(ctx context.Context, cfg *Config) *jwtCache {
	return &jwtCache{
		signer: cfg.Signer, now: cfg.Now, signTimeout: cfg.SignTimeout, log: cfg.Log, ctx: ctx,
		entries: make(map[jwtKey]*jwtEntry), perID: make(map[spiffeid.ID]int), flights: make(map[jwtKey]*jwtFlight),
		signs: make(map[spiffeid.ID]*rate.Limiter),
	}
}

// get returns a JWT-SVID of id for audience: the cached one until half its
// life, else a new signature (or the one under way for the same key),
// which it waits for until ctx ends. The Signer is asked for audience with
// each value once, in the order given.
func (c *jwtCache) get(ctx context.Context, id spiffeid.ID, audience []string) (string, error) {
	audience = unique(audience)
	key := jwtKey{id: id, audience: audienceKey(audience)}
	c.mu.Lock()
	if e, ok := c.entries[key]; ok {
		if c.now().Before(e.renewAt) {
			defer c.mu.Unlock()
			return e.token, nil
		}
		c.removeLocked(key)
	}
	f, ok := c.flights[key]
	if !ok {
		l := c.signs[id]
		if l == nil {
			l = rate.NewLimiter(jwtSignRate, jwtSignBurst)
			c.signs[id] = l
		}
		if !l.AllowN(c.now(), 1) {
			c.mu.Unlock()
			return "", errJWTRate
		}
		f = &jwtFlight{done: make(chan struct{})}
		c.flights[key] = f
		c.flying.Go(func() { c.fly(c.ctx, key, audience, f) }) //nolint:contextcheck // not under ctx: others may wait for it; it ends with the server
	}
	c.mu.Unlock()
	select {
	case <-f.done:
		return f.token, f.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// wait waits for the signatures under way, which end with the cache's
// context.
func (c *jwtCache) wait() { c.flying.Wait() }

// fly gets a JWT-SVID signed, checks it, and keeps it unless it is too
// long to.
func (c *jwtCache) fly(ctx context.Context, key jwtKey, audience []string, f *jwtFlight) {
	ctx, cancel := context.WithTimeout(ctx, c.signTimeout)
	defer cancel()
	token, err := c.signer.SignJWTSVID(ctx, key.id, audience)
	if err != nil {
		err = fmt.Errorf("workloadapi: JWT-SVID for %s: %w", key.id, err)
	}
	c.mu.Lock()
	delete(c.flights, key)
	now := c.now()
	var renewAt time.Time
	if err == nil {
		renewAt, err = checkJWTSVID(token, key.id, audience, now)
	}
	if err == nil && len(token) <= maxCachedJWT {
		c.storeLocked(key, &jwtEntry{token: token, received: now, renewAt: renewAt})
		c.log.Debug("JWT-SVID signed", "id", key.id.String(), "audience", logAudience(audience), "renewAt", renewAt)
	}
	c.mu.Unlock()
	if err != nil {
		token = ""
	}
	f.token, f.err = token, err
	close(f.done)
}

// checkJWTSVID checks that token, from the Signer, is a JWT-SVID for id
// and every value of audience that has not expired at now, and returns
// when it is renewed: half way from now (or its iat, if later) to its
// exp. Its signature is the authority's, over a verified connection: it
// is not checked here.
func checkJWTSVID(token string, id spiffeid.ID, audience []string, now time.Time) (time.Time, error) {
	tok, err := jwt.ParseSigned(token, jwtAlgorithms)
	if err != nil {
		return time.Time{}, fmt.Errorf("workloadapi: the signer's JWT-SVID for %s does not parse: %w", id, err)
	}
	var claims jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&claims); err != nil {
		return time.Time{}, fmt.Errorf("workloadapi: the signer's JWT-SVID for %s has no claims we read: %w", id, err)
	}
	switch {
	case claims.Subject != id.String():
		return time.Time{}, fmt.Errorf("workloadapi: the signer's JWT-SVID is for %q when asked for %s", claims.Subject, id)
	case slices.ContainsFunc(audience, func(a string) bool { return !slices.Contains(claims.Audience, a) }):
		return time.Time{}, fmt.Errorf("workloadapi: the signer's JWT-SVID for %s is not for every audience asked", id)
	case claims.Expiry == nil:
		return time.Time{}, fmt.Errorf("workloadapi: the signer's JWT-SVID for %s has no exp", id)
	case !now.Before(claims.Expiry.Time()):
		return time.Time{}, fmt.Errorf("workloadapi: the signer's JWT-SVID for %s expired at %s (is the agent's clock right?)",
			id, claims.Expiry.Time().UTC().Format(time.RFC3339))
	}
	var iat time.Time
	if claims.IssuedAt != nil {
		iat = claims.IssuedAt.Time()
	}
	return halfway(iat, claims.Expiry.Time(), now), nil
}

// storeLocked keeps e under key, making room first: the oldest entry of
// key's ID if it has maxJWTPerID, the oldest of all if there are maxJWT.
// c.mu is held.
func (c *jwtCache) storeLocked(key jwtKey, e *jwtEntry) {
	if _, ok := c.entries[key]; !ok {
		if c.perID[key.id] >= maxJWTPerID {
			c.removeLocked(c.oldestLocked(func(k jwtKey) bool { return k.id == key.id }))
		}
		if len(c.entries) >= maxJWT {
			c.removeLocked(c.oldestLocked(func(jwtKey) bool { return true }))
		}
		c.perID[key.id]++
	}
	c.entries[key] = e
}

// oldestLocked returns the key of the entry received first among those
// match accepts. c.mu is held.
func (c *jwtCache) oldestLocked(match func(jwtKey) bool) jwtKey {
	var oldest jwtKey
	var at time.Time
	first := true
	for k, e := range c.entries {
		if match(k) && (first || e.received.Before(at)) {
			oldest, at, first = k, e.received, false
		}
	}
	return oldest
}

// removeLocked drops the entry of key, if there is one. c.mu is held.
func (c *jwtCache) removeLocked(key jwtKey) {
	if _, ok := c.entries[key]; !ok {
		return
	}
	delete(c.entries, key)
	if c.perID[key.id]--; c.perID[key.id] <= 0 {
		delete(c.perID, key.id)
	}
}

// sweep drops the JWT-SVIDs past half their life.
func (c *jwtCache) sweep() {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	for k, e := range c.entries {
		if !now.Before(e.renewAt) {
			c.removeLocked(k)
		}
	}
	for id, l := range c.signs {
		if l.TokensAt(now) >= jwtSignBurst {
			delete(c.signs, id)
		}
	}
}

// unique returns audience with each value once, in the order of their
// first appearance.
func unique(audience []string) []string {
	out := make([]string, 0, len(audience))
	for _, a := range audience {
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// audienceKey is the audience set's part of a jwtKey.
func audienceKey(audience []string) string {
	sorted := slices.Sorted(slices.Values(audience))
	var b strings.Builder
	for _, a := range sorted {
		b.WriteString(strconv.Itoa(len(a)))
		b.WriteByte(':')
		b.WriteString(a)
	}
	return b.String()
}
