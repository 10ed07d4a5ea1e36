package authority

import (
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// How many refusals a second are audited one by one: per source (an
// address, an agent's node) and in all. Past them, refusals are counted,
// and the count goes into the next refusal of that source that is audited.
const (
	refusalsPerSource      = 5
	refusalsPerSourceBurst = 20
	refusalsInAll          = 100
	refusalsInAllBurst     = 500
)

// refusalAudit bounds the audit events of refused calls, so that a flood
// of calls that are refused (anyone may send them) cannot fill the audit
// trail and push its records out of a component's rotated log, where
// kzero audit verify --stream reads them. It is safe for concurrent use.
type refusalAudit struct {
	perSource *keyedLimiter
	all       *rate.Limiter
	now       func() time.Time

	mu         sync.Mutex
	suppressed map[string]int // guarded by mu: refusals not audited, by source
}

func newRefusalAudit(now func() time.Time) *refusalAudit {
	return &refusalAudit{perSource: newKeyedLimiter(refusalsPerSource, refusalsPerSourceBurst, now),
		all: rate.NewLimiter(refusalsInAll, refusalsInAllBurst), now: now, suppressed: map[string]int{}}
}

// admit reports whether a refusal from source is audited now; when it
// is, note says how many refusals from source were not, since the last
// one that was ("" for none), to end the event's reason with.
func (r *refusalAudit) admit(source string) (note string, ok bool) {
	allowed := r.perSource.allow(source) && r.all.AllowN(r.now(), 1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if !allowed {
		if _, counted := r.suppressed[source]; counted || len(r.suppressed) < maxLimited {
			r.suppressed[source]++
		}
		return "", false
	}
	n := r.suppressed[source]
	delete(r.suppressed, source)
	if n == 0 {
		return "", true
	}
	return fmt.Sprintf(" (and %d more refusals of %s since the last one recorded, over the rate of %d a second audited one by one)",
		n, source, refusalsPerSource), true
}
