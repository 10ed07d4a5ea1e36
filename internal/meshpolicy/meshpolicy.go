// Package meshpolicy decides the tunnel's streams with AccessPolicy: the
// Authorize function of an enrolled pod's tunnel endpoint (internal/mesh),
// from the engine of internal/policy, swapped in whole when the policies
// change. It stands apart from internal/mesh so that the pod's network
// side never depends on the Kubernetes types the policies are written in.
package meshpolicy

import (
	"context"
	"sync/atomic"

	"kzero.dev/kzero/internal/policy"
	"kzero.dev/kzero/internal/tunnel"
)

// Policies is the engine the tunnel decides with. The agent swaps in a new
// one when AccessPolicies change; connections opened after the swap are
// decided by it, those already open are not cut.
type Policies struct {
	engine atomic.Pointer[policy.Engine]
}

// Set makes e the engine of the decisions to come.
func (p *Policies) Set(e *policy.Engine) { p.engine.Store(e) }

// Authorizer returns the Authorize function of the pod whose workload dest
// returns (asked at every stream, as a pod's labels may change): each stream is decided at L4 by the current engine (source
// identity, destination workload and port), and record, if not nil,
// receives the request and the decision to audit. Without an engine yet,
// it refuses: a pod of an enrolled namespace is never left open for want
// of policy.
func (p *Policies) Authorizer(dest func() policy.Workload, record func(*policy.Request, policy.Decision)) func(context.Context, tunnel.Request) tunnel.Decision {
	return func(_ context.Context, r tunnel.Request) tunnel.Decision {
		e := p.engine.Load()
		if e == nil {
			return tunnel.Decision{Reason: "the agent has no policy yet: denied until it has"}
		}
		req := &policy.Request{Source: r.Source, Destination: dest(), Port: int32(r.Destination.Port())}
		d := e.Decide(req)
		if record != nil {
			record(req, d)
		}
		return tunnel.Decision{Allow: d.Allowed, Reason: d.Reason()}
	}
}
