package authority

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Rate limits of the agent API, as SPIRE's server has for node
// attestation (by caller address) and signing (by agent).
const (
	// DefaultAttestRate is how many attestations a second one address may
	// make (DefaultAttestBurst at once): each costs a TokenReview, which
	// anyone who reaches the API could otherwise have the authority send
	// kube-apiserver without end.
	DefaultAttestRate  = 2
	DefaultAttestBurst = 10
	// DefaultSignRate is how many SVIDs a second one agent may have
	// signed (DefaultSignBurst at once): a node's pods all starting at
	// once get theirs in the burst, and steady renewal (one X.509-SVID per
	// service account every half hour) is far below the rate.
	DefaultSignRate  = 50
	DefaultSignBurst = 300
	// maxLimited bounds the callers tracked: past it, the one used least
	// recently is forgotten (its bucket full again when next seen), so
	// that a flood of new addresses costs no memory and takes no one
	// else's allowance.
	maxLimited = 4096
	// limiterIdle is how long a caller's limiter is kept after its last
	// use (by then it is full again).
	limiterIdle = 10 * time.Minute
)

// keyedLimiter gives each caller (an address, a node) a token bucket of
// its own. It is safe for concurrent use.
type keyedLimiter struct {
	r     rate.Limit
	burst int
	now   func() time.Time

	mu      sync.Mutex
	callers map[string]*callerLimit // guarded by mu
	swept   time.Time               // guarded by mu
}

type callerLimit struct {
	l    *rate.Limiter
	used time.Time
}

func newKeyedLimiter(perSecond float64, burst int, now func() time.Time) *keyedLimiter {
	return &keyedLimiter{r: rate.Limit(perSecond), burst: burst, now: now, callers: map[string]*callerLimit{}}
}

// allow takes one token of key's bucket; false when it has none left.
func (k *keyedLimiter) allow(key string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.now()
	if now.Sub(k.swept) > limiterIdle {
		for c, cl := range k.callers {
			if now.Sub(cl.used) > limiterIdle {
				delete(k.callers, c)
			}
		}
		k.swept = now
	}
	cl := k.callers[key]
	if cl == nil {
		if len(k.callers) >= maxLimited {
			k.forgetOldest()
		}
		cl = &callerLimit{l: rate.NewLimiter(k.r, k.burst)}
		k.callers[key] = cl
	}
	cl.used = now
	return cl.l.AllowN(now, 1)
}

// forgetOldest forgets the caller used least recently; k.mu is held. It
// runs only with maxLimited callers tracked, all seen in the last
// limiterIdle.
func (k *keyedLimiter) forgetOldest() {
	var oldest string
	var at time.Time
	for c, cl := range k.callers {
		if oldest == "" || cl.used.Before(at) {
			oldest, at = c, cl.used
		}
	}
	delete(k.callers, oldest)
}
