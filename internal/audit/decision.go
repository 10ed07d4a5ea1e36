package audit

import (
	"strings"

	"kzero.dev/kzero/api/v1alpha1"
	"kzero.dev/kzero/internal/policy"
)

// brokenRule names the rule of a decision made by a policy that does not
// compile.
const brokenRule = "(does not compile)"

// AccessEvent returns the audit event of a policy decision on r, for the
// component that enforced it: the outcome is what happened (the verdict
// when enforced, allow in audit mode), the reason the decision's own
// sentence. Time and ID are left for the Recorder. It returns false for a
// destination namespace that is not enrolled: kzero did not decide.
func AccessEvent(c Component, r *policy.Request, d policy.Decision) (Event, bool) {
	if d.Cause == policy.CauseNotEnrolled {
		return Event{}, false
	}
	a := &Access{
		Source:      Source{SPIFFEID: r.Source},
		Destination: Destination{Namespace: r.Destination.Namespace, ServiceAccount: r.Destination.ServiceAccount},
		Protocol:    "tcp",
		Verdict:     verdictOf(d.Verdict),
		Mode:        ModeEnforce,
		Enforced:    true,
	}
	if r.Port > 0 && r.Port <= 65535 {
		a.Destination.Port = uint16(r.Port)
	}
	if r.User != nil {
		a.Source.User = &User{Issuer: r.User.Issuer, Subject: r.User.Subject}
	}
	if r.HTTP {
		a.Protocol, a.Method, a.Path, a.Host = "http", r.Method, redactPath(stripQuery(r.Path)), redact(r.Host)
	}
	if d.Mode == v1alpha1.ModeAudit {
		a.Mode, a.Enforced = ModeAudit, false
	}
	if !d.By.IsZero() {
		a.Policy = refOf(d.By)
	}
	if d.Audit {
		a.Audit = &AuditFinding{Verdict: verdictOf(d.AuditVerdict), Policy: *refOf(d.AuditBy)}
	}
	outcome := OutcomeAllow
	if !d.Allowed {
		outcome = OutcomeDeny
	}
	return Event{Schema: Schema, Kind: KindAccess, Component: c, Outcome: outcome, Reason: d.Reason(), Access: a}, true
}

func verdictOf(v policy.Verdict) Verdict {
	if v == policy.Allow {
		return VerdictAllow
	}
	return VerdictDeny
}

func refOf(r policy.RuleRef) *PolicyRef {
	rule := r.Rule
	if rule == "" {
		rule = brokenRule
	}
	return &PolicyRef{Namespace: r.Namespace, Name: r.Policy, Rule: rule}
}

// redacted stands for a path segment or host that looked like a secret.
const redacted = "[redacted]"

// redactPath replaces each path segment that looks like a bearer token or
// key material, which an event must never carry, so that a client cannot
// keep its request out of the audit trail by putting a token in its path.
func redactPath(p string) string {
	if !looksSecret(p) {
		return p
	}
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i] = redact(s)
	}
	return strings.Join(segs, "/")
}

func redact(s string) string {
	if looksSecret(s) {
		return redacted
	}
	return s
}

// stripQuery drops a query or fragment, which may carry secrets.
func stripQuery(p string) string {
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		return p[:i]
	}
	return p
}
