package workloadapi

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// maxRetry is the longest the cache waits before it tries again to renew
// an SVID after failures; the first retry comes after a second, and each
// failure doubles the wait.
const maxRetry = time.Minute

// RetryAfter is how long to wait before signing an SVID again after
// failures in a row: a second, doubling up to maxRetry.
func RetryAfter(failures int) time.Duration {
	return min(time.Second<<min(max(failures, 1)-1, 6), maxRetry)
}

// cache holds one X.509-SVID per SPIFFE ID. A caller's first get makes the
// one signature every concurrent caller of that ID waits for; sweep renews
// SVIDs from half their life on and drops the entries nobody uses. It is
// safe for concurrent use.
type cache struct {
	signer      Signer
	now         func() time.Time
	idle        time.Duration
	signTimeout time.Duration
	log         *slog.Logger
	// ctx is the server's run: signing outlives the request that started
	// it (others may wait for it), not the server.
	ctx context.Context

	mu      sync.Mutex
	entries map[spiffeid.ID]*entry // guarded by mu
}

// entry is the cache's state for one SPIFFE ID. All fields are guarded by
// cache.mu.
type entry struct {
	svid     *issued       // nil until the first signature
	changed  chan struct{} // closed and replaced when svid changes
	flight   *flight       // the signature under way, if any
	watchers int           // open streams for this ID
	lastUsed time.Time     // last get, or last stream's end
	failures int           // renewals failed in a row
	retryAt  time.Time     // no renewal before, after a failure
}

// flight is one signature; done is closed when svid or err is set.
type flight struct {
	done chan struct{}
	svid *issued
	err  error
}

// issued is an X.509-SVID ready to send. It never changes.
type issued struct {
	id                spiffeid.ID
	chain             []byte // DER, leaf first, concatenated
	key               []byte // PKCS#8 DER; secret: never logged
	notAfter, renewAt time.Time
}

// LogValue keeps the private key out of any log an issued lands in.
func (s *issued) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", s.id.String()), slog.Time("notAfter", s.notAfter), slog.Time("renewAt", s.renewAt))
}

func newCache(ctx context.Context, cfg *Config) *cache {
	return &cache{
		signer: cfg.Signer, now: cfg.Now, idle: cfg.Idle, signTimeout: cfg.SignTimeout, log: cfg.Log,
		ctx: ctx, entries: make(map[spiffeid.ID]*entry),
	}
}

// entryLocked returns the entry of id, made if need be. c.mu is held.
func (c *cache) entryLocked(id spiffeid.ID) *entry {
	e, ok := c.entries[id]
	if !ok {
		e = &entry{changed: make(chan struct{}), lastUsed: c.now()}
		c.entries[id] = e
	}
	return e
}

// get returns the X.509-SVID of id, and a channel closed when it is
// replaced. Without a valid one it starts a signature, or joins the one
// under way, and waits for it until ctx ends.
func (c *cache) get(ctx context.Context, id spiffeid.ID) (*issued, <-chan struct{}, error) {
	c.mu.Lock()
	now := c.now()
	e := c.entryLocked(id)
	e.lastUsed = now
	if e.svid != nil && now.Before(e.svid.notAfter) {
		defer c.mu.Unlock()
		return e.svid, e.changed, nil
	}
	f := e.flight
	if f == nil {
		// Not under ctx: others may wait for this signature after the
		// caller that starts it has gone. It ends with the server.
		f = c.startLocked(c.ctx, id, e) //nolint:contextcheck // see above
	}
	c.mu.Unlock()
	select {
	case <-f.done:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	if f.err != nil {
		return nil, nil, f.err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.svid != nil && c.now().Before(e.svid.notAfter) {
		return e.svid, e.changed, nil
	}
	// Replaced, or evicted and expired, since: give what was signed, and a
	// channel that tells of the next one.
	return f.svid, e.changed, nil
}

// watch counts an open stream of id, so that its entry is not dropped;
// the stream calls the returned function when it ends.
func (c *cache) watch(id spiffeid.ID) (release func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entryLocked(id)
	e.watchers++
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			e.watchers--
			e.lastUsed = c.now()
		})
	}
}

// sweep drops the entries that no stream watches and nobody asked for
// during idle, and starts the renewal of the SVIDs past half their life,
// under ctx.
func (c *cache) sweep(ctx context.Context) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	for id, e := range c.entries {
		switch {
		case e.flight != nil:
		case e.watchers == 0 && now.Sub(e.lastUsed) >= c.idle:
			delete(c.entries, id)
			c.log.Debug("dropped an unused X.509-SVID", "id", id.String())
		case e.svid != nil && !now.Before(e.svid.renewAt) && !now.Before(e.retryAt):
			c.startLocked(ctx, id, e)
		}
	}
}

// run sweeps every interval, and calls also, until ctx ends.
func (c *cache) run(ctx context.Context, interval time.Duration, also func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.sweep(ctx)
			also()
		}
	}
}

// startLocked starts a signature for id under ctx. c.mu is held.
func (c *cache) startLocked(ctx context.Context, id spiffeid.ID, e *entry) *flight {
	f := &flight{done: make(chan struct{})}
	e.flight = f
	go c.fly(ctx, id, e, f)
	return f
}

// fly gets an SVID signed and puts it in e.
func (c *cache) fly(ctx context.Context, id spiffeid.ID, e *entry, f *flight) {
	ctx, cancel := context.WithTimeout(ctx, c.signTimeout)
	defer cancel()
	s, err := c.issue(ctx, id)

	c.mu.Lock()
	e.flight = nil
	now := c.now()
	if err != nil {
		e.failures++
		e.retryAt = now.Add(RetryAfter(e.failures))
		if e.svid != nil && now.Before(e.svid.notAfter) {
			c.log.Warn("renewing an X.509-SVID failed; the current one is served until it expires",
				"id", id.String(), "notAfter", e.svid.notAfter, "retryAt", e.retryAt, "error", err)
		} else {
			c.log.Warn("getting an X.509-SVID signed failed", "id", id.String(), "error", err)
		}
	} else {
		e.failures, e.retryAt = 0, time.Time{}
		e.svid = s
		close(e.changed)
		e.changed = make(chan struct{})
		c.log.Debug("X.509-SVID signed", "svid", s)
	}
	c.mu.Unlock()

	f.svid, f.err = s, err
	close(f.done)
}

// issue has the Signer certify a new key for id (SignX509SVID), in the
// form the cache serves.
func (c *cache) issue(ctx context.Context, id spiffeid.ID) (*issued, error) {
	s, err := SignX509SVID(ctx, c.signer, id, c.now())
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(s.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("workloadapi: key for %s: %w", id, err)
	}
	var der []byte
	for _, c := range s.Certificates {
		der = append(der, c.Raw...)
	}
	leaf := s.Certificates[0]
	return &issued{
		id: id, chain: der, key: keyDER, notAfter: leaf.NotAfter,
		renewAt: RenewAt(leaf, c.now()),
	}, nil
}

// SignX509SVID makes a key, has signer certify it for id, and checks that
// what comes back is an X.509-SVID for id and that key, valid at now. The
// Workload API's cache and the mesh's pods get their SVIDs through it.
func SignX509SVID(ctx context.Context, signer Signer, id spiffeid.ID, now time.Time) (*x509svid.SVID, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("workloadapi: key for %s: %w", id, err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id.URL()}}, key)
	if err != nil {
		return nil, fmt.Errorf("workloadapi: CSR for %s: %w", id, err)
	}
	chain, err := signer.SignX509SVID(ctx, id, csr)
	if err != nil {
		return nil, fmt.Errorf("workloadapi: X.509-SVID for %s: %w", id, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("workloadapi: key for %s: %w", id, err)
	}
	s, err := x509svid.ParseRaw(bytes.Join(chain, nil), keyDER)
	if err != nil {
		return nil, fmt.Errorf("workloadapi: the signer's answer for %s is not an X.509-SVID for the agent's key: %w", id, err)
	}
	if s.ID != id {
		return nil, fmt.Errorf("workloadapi: the signer certified %s when asked for %s", s.ID, id)
	}
	if leaf := s.Certificates[0]; !now.Before(leaf.NotAfter) {
		return nil, fmt.Errorf("workloadapi: the signer's X.509-SVID for %s expired at %s (is the agent's clock right?)", id, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return s, nil
}

// RenewAt is when a certificate received at now is renewed: half way from
// then (or its NotBefore, if later) to its NotAfter. Half of its life
// counted from NotBefore would be too early, or already past, for a
// certificate whose NotBefore is backdated for clock skew.
func RenewAt(leaf *x509.Certificate, now time.Time) time.Time {
	return halfway(leaf.NotBefore, leaf.NotAfter, now)
}

// halfway is half way from now, or from if later, to to.
func halfway(from, to, now time.Time) time.Time {
	if now.After(from) {
		from = now
	}
	return from.Add(to.Sub(from) / 2)
}
