package meshnode

import (
	"kzero.dev/kzero/internal/audit"
	"kzero.dev/kzero/internal/mesh"
	"kzero.dev/kzero/internal/policy"
)

// recordDecision audits the policy's decisions on a pod's inbound
// streams.
func (n *Node) recordDecision(e *podEntry) func(*policy.Request, policy.Decision) {
	return func(r *policy.Request, d policy.Decision) {
		if n.cfg.Audit == nil {
			return
		}
		ev, ok := audit.AccessEvent(audit.ComponentAgent, r, d)
		if !ok {
			return
		}
		ev.Access.Destination.Workload = e.name
		n.cfg.Audit(ev)
	}
}

// onEvent audits what the policy does not decide: plain text into a pod
// (refused in strict mode, let in in permissive mode) and a pod's
// connections to destinations outside the mesh. The tunnel's inbound
// streams are audited as the policy decides them (recordDecision), and an
// outbound connection is decided, and audited, by its destination's
// agent.
func (n *Node) onEvent(e *podEntry) func(mesh.Event) {
	return func(ev mesh.Event) {
		if n.cfg.Audit == nil {
			return
		}
		a := &audit.Access{
			Source:      audit.Source{SPIFFEID: ev.Source, Address: ev.From},
			Destination: audit.Destination{Namespace: e.namespace, Workload: e.name, Port: ev.To.Port()},
			Protocol:    "tcp", Mode: audit.ModeEnforce, Enforced: true,
		}
		out := audit.Event{Kind: audit.KindAccess, Component: audit.ComponentAgent, Access: a}
		switch ev.Kind {
		case mesh.InboundPlaintextRefused:
			a.Verdict, out.Outcome = audit.VerdictDeny, audit.OutcomeDeny
			out.Reason = "plain text from outside the mesh to a pod of a strict namespace: refused (label the namespace kzero.dev/mesh-mode=permissive to let it in while its callers enrol)"
		case mesh.InboundPlaintextAllowed:
			// What strict mode would have refused, let in: as a
			// namespace in audit mode lets in what it would deny.
			a.Verdict, a.Mode, a.Enforced, out.Outcome = audit.VerdictDeny, audit.ModeAudit, false, audit.OutcomeAllow
			out.Reason = "plain text from outside the mesh to a pod of a permissive namespace: let in (strict mode would refuse it)"
		case mesh.OutboundPassthrough:
			a.Verdict, out.Outcome, a.Passthrough = audit.VerdictAllow, audit.OutcomeAllow, true
			a.Destination = audit.Destination{Address: ev.To, Port: ev.To.Port()}
			out.Reason = "a connection of pod " + e.namespace + "/" + e.name + " to " + ev.To.String() + ", outside the mesh: passed through in plain text (" + ev.Reason + ")"
		default:
			return
		}
		n.cfg.Audit(out)
	}
}
