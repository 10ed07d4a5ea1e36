package ca

import (
	"fmt"
	"time"
)

// stepKind is one thing rotation does.
type stepKind int

const (
	// stepDrop removes an expired record from the state and the bundle.
	stepDrop stepKind = iota
	// stepNewRoot makes a root CA, cross-signed by the newest live root.
	stepNewRoot
	// stepNewIssuer makes an issuing CA under a root.
	stepNewIssuer
	// stepNewJWTKey makes a JWT-SVID signing key.
	stepNewJWTKey
	// stepActivateNow lets a published but not yet active record sign at
	// once, because nothing else can.
	stepActivateNow
)

// step is one decision of plan, with the reason a person reads in logs.
type step struct {
	kind stepKind
	// id of the record dropped or activated.
	id string
	// parent root of a new issuer; empty means the root this plan makes.
	parent string
	// activateAt of a new record.
	activateAt time.Time
	// notAfter of a new record.
	notAfter time.Time
	reason   string
}

// plan decides what rotation must do at now: which records expired, which
// successors must be published, what must sign at once. It is pure: the
// same state, schedule and time give the same steps. The schedule:
//
//   - a record leaves the bundle when it expires; no leaf outlives its CA,
//     so nothing it signed is still valid then;
//   - the successor of the newest issuing CA (or JWT key) is made and
//     published when the newest has publishLead + longest leaf left, and
//     signs publishLead later, so the old one can still sign full-length
//     leaves until the switch;
//   - the successor of the newest root is made when the root has
//     rootPublishLead + issuerTTL left, cross-signed by it, and signs its
//     first issuing CA rootPublishLead later.
func plan(s *state, c *Config, now time.Time) []step {
	var steps []step
	live := func(rs []*record, what string) []*record {
		var out []*record
		for _, r := range rs {
			if !now.Before(r.NotAfter) {
				steps = append(steps, step{kind: stepDrop, id: r.ID,
					reason: fmt.Sprintf("%s %s expired at %s", what, r.ID, r.NotAfter.Format(time.RFC3339))})
				continue
			}
			out = append(out, r)
		}
		return out
	}
	roots := live(s.Roots, "root CA")
	issuers := live(s.Issuers, "issuing CA")
	jwtKeys := live(s.JWTKeys, "JWT key")

	// Roots.
	newRoot := false
	if len(roots) == 0 {
		newRoot = true
		steps = append(steps, step{kind: stepNewRoot, activateAt: now, notAfter: now.Add(c.RootTTL),
			reason: "no root CA is valid: making one that signs at once"})
	} else if newest := roots[len(roots)-1]; !now.Before(dueAt(newest.NotAfter, c.RootPublishLead, c.IssuerTTL)) {
		steps = append(steps, step{kind: stepNewRoot, activateAt: now.Add(c.RootPublishLead), notAfter: now.Add(c.RootTTL),
			reason: fmt.Sprintf("root CA %s expires at %s: publishing its successor %s before it signs",
				newest.ID, newest.NotAfter.Format(time.RFC3339), c.RootPublishLead)})
	}

	// Issuing CAs.
	parent, parentNotAfter := chooseRoot(roots, newRoot, now, c)
	steps = append(steps, successor(issuers, now, c.PublishLead, c.X509SVIDMaxTTL, "issuing CA", func(st step) step {
		st.kind = stepNewIssuer
		st.parent = parent
		st.notAfter = now.Add(c.IssuerTTL)
		if st.notAfter.After(parentNotAfter) {
			st.notAfter = parentNotAfter
		}
		if st.notAfter.Sub(st.activateAt) < c.X509SVIDMaxTTL {
			// Cut short by its root: waiting for its time would leave it
			// no time to sign.
			st.activateAt = now
		}
		return st
	})...)

	// JWT signing keys.
	steps = append(steps, successor(jwtKeys, now, c.PublishLead, c.JWTSVIDMaxTTL, "JWT key", func(st step) step {
		st.kind = stepNewJWTKey
		st.notAfter = now.Add(c.JWTKeyTTL)
		return st
	})...)
	return steps
}

// successor decides, for a line of records that sign leaves of at most
// maxLeaf, whether a new record is due or a pending one must sign at once.
// mk fills in the kind and lifetime of a new record.
func successor(live []*record, now time.Time, lead, maxLeaf time.Duration, what string, mk func(step) step) []step {
	var active *record
	for _, r := range live {
		if !now.Before(r.ActivateAt) {
			active = r
		}
	}
	if len(live) == 0 {
		return []step{mk(step{activateAt: now, reason: fmt.Sprintf("no %s is valid: making one that signs at once", what)})}
	}
	newest := live[len(live)-1]
	if active == nil {
		// Only pending records: the one before them expired early (the CA
		// was stopped for long). Signing now beats not signing at all; the
		// record is already in the bundle and chains to a published root.
		return []step{{kind: stepActivateNow, id: newest.ID,
			reason: fmt.Sprintf("no %s signs now: activating %s before its time %s", what, newest.ID, newest.ActivateAt.Format(time.RFC3339))}}
	}
	// late: the active record can no longer sign a full-length leaf, which
	// happens only when rotation did not run in time (the CA was down).
	late := !now.Before(active.NotAfter.Add(-maxLeaf))
	if newest != active {
		if late {
			return []step{{kind: stepActivateNow, id: newest.ID,
				reason: fmt.Sprintf("%s %s can no longer sign full-length SVIDs (it expires at %s): its published successor %s signs early",
					what, active.ID, active.NotAfter.Format(time.RFC3339), newest.ID)}}
		}
		return nil // successor already published, waiting for its time
	}
	if now.Before(dueAt(newest.NotAfter, lead, maxLeaf)) {
		return nil
	}
	if late {
		return []step{mk(step{activateAt: now,
			reason: fmt.Sprintf("%s %s expires at %s and its successor is overdue (was the CA down?): making one that signs at once",
				what, newest.ID, newest.NotAfter.Format(time.RFC3339))})}
	}
	return []step{mk(step{activateAt: now.Add(lead),
		reason: fmt.Sprintf("%s %s expires at %s: publishing its successor %s before it signs",
			what, newest.ID, newest.NotAfter.Format(time.RFC3339), lead)})}
}

// chooseRoot picks the root that signs a new issuing CA, always one with
// room for a full issuing CA's lifetime: the newest root that has been
// published for its lead time; failing that (the successor root was made
// late, because the CA was down), the newest pending root, which is already
// published and cross-signed by the old one; failing that, the root this
// plan makes. It returns the root's ID ("" for the new one) and its expiry.
// Only if none of these exists does it fall back to the newest signing root,
// and the issuing CA is cut short to that root's life.
func chooseRoot(roots []*record, newRoot bool, now time.Time, c *Config) (string, time.Time) {
	room := func(r *record) bool { return !r.NotAfter.Before(now.Add(c.IssuerTTL)) }
	var mature, pending, signing *record
	for i := len(roots) - 1; i >= 0; i-- {
		r := roots[i]
		switch {
		case now.Before(r.ActivateAt):
			if pending == nil && room(r) {
				pending = r
			}
		case signing == nil:
			signing = r
			fallthrough
		default:
			if mature == nil && room(r) {
				mature = r
			}
		}
	}
	switch {
	case mature != nil:
		return mature.ID, mature.NotAfter
	case pending != nil:
		return pending.ID, pending.NotAfter
	case newRoot:
		return "", now.Add(c.RootTTL)
	case signing != nil:
		return signing.ID, signing.NotAfter
	}
	return "", now.Add(c.RootTTL) // unreachable: plan makes a root when none is live
}

// nextEvent returns the earliest time after now at which plan would do
// something or a pending record starts to sign: when CA.Rotate should run
// next.
func nextEvent(s *state, c *Config, now time.Time) time.Time {
	next := time.Time{}
	consider := func(t time.Time) {
		if t.After(now) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	line := func(rs []*record, successorDue func(*record) time.Time) {
		for _, r := range rs {
			consider(r.NotAfter)
			consider(r.ActivateAt)
		}
		if len(rs) > 0 {
			consider(successorDue(rs[len(rs)-1]))
		}
	}
	line(s.Roots, func(r *record) time.Time { return dueAt(r.NotAfter, c.RootPublishLead, c.IssuerTTL) })
	line(s.Issuers, func(r *record) time.Time { return dueAt(r.NotAfter, c.PublishLead, c.X509SVIDMaxTTL) })
	line(s.JWTKeys, func(r *record) time.Time { return dueAt(r.NotAfter, c.PublishLead, c.JWTSVIDMaxTTL) })
	if limit := now.Add(maxRotateInterval); next.IsZero() || next.After(limit) {
		next = limit
	}
	return next
}

// maxRotateInterval is the longest Next ever asks Rotate to wait, so that a
// clock that jumps or a missed call costs minutes, not days.
const maxRotateInterval = 10 * time.Minute

// dueAt is when the successor of a record expiring at notAfter must be
// published: early enough to be in the bundle for lead before it signs,
// while the record can still sign its longest child.
func dueAt(notAfter time.Time, lead, longest time.Duration) time.Time {
	return notAfter.Add(-longest - lead)
}
