package audit

import (
	"fmt"
	"regexp"
	"strings"
)

// Validate checks that e follows the schema: a known component and kind,
// the payload of its kind and no other, an outcome that kind may have, a
// reason, the payload's required fields, and nothing that looks like key
// material or a bearer token. Every problem is reported, with its field
// path; the error wraps ErrInvalidEvent.
func (e *Event) Validate() error {
	var v validator
	if e.Schema != Schema {
		v.add("schema", "%q is not %q", e.Schema, Schema)
	}
	if e.Time.IsZero() {
		v.add("time", "is not set")
	}
	if e.ID == "" {
		v.add("id", "is empty")
	}
	switch e.Component {
	case ComponentAuthority, ComponentAgent, ComponentGateway, ComponentCLI:
	default:
		v.add("component", "%q is not authority, agent, gateway or cli", e.Component)
	}
	if strings.TrimSpace(e.Reason) == "" {
		v.add("reason", "is empty: say why, so that a person can act on it")
	}
	v.secret("reason", e.Reason)
	payloads := map[Kind]bool{KindIssuance: e.Issuance != nil, KindAdmission: e.Admission != nil, KindAccess: e.Access != nil}
	for _, k := range []Kind{KindIssuance, KindAdmission, KindAccess} {
		if payloads[k] && k != e.Kind {
			v.add(string(k), "is set in an event of kind %q", e.Kind)
		}
	}
	switch e.Kind {
	case KindIssuance:
		v.outcome(e.Outcome, OutcomeSuccess, OutcomeFailure)
		v.issuance(e.Issuance)
	case KindAdmission:
		v.outcome(e.Outcome, OutcomeAllow, OutcomeDeny)
		v.admission(e.Admission, e.Outcome)
	case KindAccess:
		v.outcome(e.Outcome, OutcomeAllow, OutcomeDeny)
		v.access(e.Access, e.Outcome)
	case KindKubernetes:
		v.add("kind", "kubernetes is reserved for Kubernetes API audit events and not written yet")
	default:
		v.add("kind", "%q is not issuance, admission or access", e.Kind)
	}
	return v.err()
}

// validator gathers problems, each with its field path.
type validator struct{ problems []string }

func (v *validator) add(path, format string, args ...any) {
	v.problems = append(v.problems, path+": "+fmt.Sprintf(format, args...))
}

func (v *validator) err() error {
	if len(v.problems) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrInvalidEvent, strings.Join(v.problems, "; "))
}

func (v *validator) outcome(o Outcome, allowed ...Outcome) {
	for _, a := range allowed {
		if o == a {
			return
		}
	}
	v.add("outcome", "%q is not %s or %s", o, allowed[0], allowed[1])
}

// jwtLike matches a JWS compact serialization's header and payload.
var jwtLike = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}`)

// secret refuses what looks like a PEM block or a JWT: events must never
// carry key material or bearer tokens.
func (v *validator) secret(path, s string) {
	if isPEM(s) {
		v.add(path, "contains a PEM block: never put key material in an event")
	}
	if isJWT(s) {
		v.add(path, "contains what looks like a JWT: never put bearer tokens in an event")
	}
}

func isPEM(s string) bool { return strings.Contains(s, "-----BEGIN") }
func isJWT(s string) bool { return strings.Contains(s, "eyJ") && jwtLike.MatchString(s) }

// looksSecret reports whether s carries key material or a bearer token.
func looksSecret(s string) bool { return isPEM(s) || isJWT(s) }

// redactText replaces, in free text, what looks like a JWT and the start
// of a PEM block with [redacted], leaving the rest.
func redactText(s string) string {
	if !looksSecret(s) {
		return s
	}
	s = jwtLike.ReplaceAllString(s, redacted)
	return strings.ReplaceAll(s, "-----BEGIN", redacted)
}

// redact redacts the free text of e that may quote what a caller sent
// (its reason, an issuance's requester, an admission's caller): a refusal
// that quotes a caller's path or certificate name stays an event that can
// be recorded, and a caller cannot keep its attempt out of the trail by
// putting a token in it. Record calls it; Validate still refuses what it
// leaves.
func (e *Event) redact() {
	e.Reason = redactText(e.Reason)
	if e.Issuance != nil && looksSecret(e.Issuance.Requester) {
		p := *e.Issuance
		p.Requester = redactText(p.Requester)
		e.Issuance = &p
	}
	if e.Admission != nil && looksSecret(e.Admission.Caller) {
		p := *e.Admission
		p.Caller = redactText(p.Caller)
		e.Admission = &p
	}
}

func (v *validator) issuance(p *Issuance) {
	if p == nil {
		v.add("issuance", "is missing")
		return
	}
	if p.SPIFFEID.IsZero() {
		v.add("issuance.spiffeID", "is empty")
	}
	if p.Type != SVIDTypeX509 && p.Type != SVIDTypeJWT {
		v.add("issuance.type", "%q is not %s or %s", p.Type, SVIDTypeX509, SVIDTypeJWT)
	}
	if p.Requester == "" {
		v.add("issuance.requester", "is empty")
	}
	v.secret("issuance.requester", p.Requester)
	if !p.NotAfter.IsZero() && !p.NotAfter.After(p.NotBefore) {
		v.add("issuance.notAfter", "is not after notBefore")
	}
}

func (v *validator) admission(p *Admission, o Outcome) {
	if p == nil {
		v.add("admission", "is missing")
		return
	}
	// A review refused because its sender is not authenticated is not
	// read: it has no uid, resource or operation.
	if unread := p.Unauthenticated && !p.Allowed && p.UID == "" && p.Resource == "" && p.Operation == ""; !unread {
		if p.UID == "" {
			v.add("admission.uid", "is empty")
		}
		if p.Resource == "" {
			v.add("admission.resource", "is empty")
		}
		switch p.Operation {
		case "CREATE", "UPDATE", "DELETE", "CONNECT":
		default:
			v.add("admission.operation", "%q is not CREATE, UPDATE, DELETE or CONNECT", p.Operation)
		}
	}
	if p.Allowed != (o == OutcomeAllow) {
		v.add("admission.allowed", "is %t but the outcome is %q", p.Allowed, o)
	}
	if p.Caller != "" && p.Unauthenticated {
		v.add("admission.caller", "is set, but the event says its sender is not authenticated")
	}
	v.secret("admission.caller", p.Caller)
}

func (v *validator) access(p *Access, o Outcome) {
	if p == nil {
		v.add("access", "is missing")
		return
	}
	// An empty source is an anonymous peer: no SVID, no end user. Its
	// decisions are audited like any other.
	s := p.Source
	if s.User != nil && s.User.Issuer == "" && s.User.Subject == "" {
		v.add("access.source.user", "is empty: give the issuer or the subject, or leave user out")
	}
	d := p.Destination
	if d.SPIFFEID.IsZero() && d.Namespace == "" && d.Workload == "" && !d.Address.IsValid() {
		v.add("access.destination", "names no SPIFFE ID, namespace, workload or address")
	}
	if p.Protocol != "tcp" && p.Protocol != "http" {
		v.add("access.protocol", "%q is not tcp or http", p.Protocol)
	}
	if strings.ContainsAny(p.Path, "?#") {
		v.add("access.path", "has a query or fragment: leave it out, it may carry secrets")
	}
	v.secret("access.path", p.Path)
	v.secret("access.host", p.Host)
	if p.Verdict != VerdictAllow && p.Verdict != VerdictDeny {
		v.add("access.verdict", "%q is not allow or deny", p.Verdict)
	}
	switch p.Mode {
	case ModeEnforce, ModeAudit:
		if p.Enforced != (p.Mode == ModeEnforce) {
			v.add("access.enforced", "is %t in mode %s", p.Enforced, p.Mode)
		}
	default:
		v.add("access.mode", "%q is not enforce or audit", p.Mode)
	}
	if want := effect(p); o != want && p.Verdict != "" && p.Mode != "" {
		v.add("outcome", "is %q but verdict %s in mode %s has effect %s", o, p.Verdict, p.Mode, want)
	}
	if p.Policy == nil && p.Verdict == VerdictAllow && !p.Passthrough {
		v.add("access.policy", "is missing: an allow names the policy and rule that allowed (or is a passthrough)")
	}
	if p.Passthrough && (p.Verdict != VerdictAllow || p.Policy != nil || !d.Address.IsValid()) {
		v.add("access.passthrough", "is an allow with the destination's address and no policy")
	}
	if p.Policy != nil && (p.Policy.Namespace == "" || p.Policy.Name == "" || p.Policy.Rule == "") {
		v.add("access.policy", "needs namespace, name and rule")
	}
	if a := p.Audit; a != nil {
		if a.Verdict != VerdictAllow && a.Verdict != VerdictDeny {
			v.add("access.audit.verdict", "%q is not allow or deny", a.Verdict)
		}
		if a.Policy.Namespace == "" || a.Policy.Name == "" || a.Policy.Rule == "" {
			v.add("access.audit.policy", "needs namespace, name and rule")
		}
	}
}

// effect is what an access decision did: its verdict when enforced, allow
// in audit mode.
func effect(p *Access) Outcome {
	if p.Enforced && p.Verdict == VerdictDeny {
		return OutcomeDeny
	}
	return OutcomeAllow
}
