package policy

import (
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"kzero.dev/kzero/api/v1alpha1"
)

// Request is what the tunnel or the gateway knows of a request when it
// asks Decide. The engine reads it and keeps nothing.
type Request struct {
	// Source is the peer's SPIFFE ID, from its verified X.509-SVID; zero
	// when the peer has none.
	Source spiffeid.ID
	// User is the end user the gateway authenticated; nil if none.
	User *User
	// Destination is the workload the request is for.
	Destination Workload
	// Port of the destination workload.
	Port int32
	// HTTP is true when the request was read as HTTP; Method, Path, Host and
	// Headers are meaningful only then.
	HTTP bool
	// Method is upper case, Path starts with '/', Host is lower case
	// without a port.
	Method, Path, Host string
	// Headers, with lower-case names, for CEL conditions.
	Headers map[string]string
}

// Workload is a destination workload.
type Workload struct {
	Namespace      string
	ServiceAccount string
	// Labels of its pod.
	Labels map[string]string
}

// User is an authenticated end user.
type User struct {
	// Issuer and Subject of the user's token (OIDC iss and sub).
	Issuer, Subject string
	// Claims of the token; values are strings, numbers, booleans or lists
	// of them, as JSON decodes them.
	Claims map[string]any
}

// Verdict is allow or deny.
type Verdict bool

// Verdicts.
const (
	Deny  Verdict = false
	Allow Verdict = true
)

func (v Verdict) String() string {
	if v {
		return "allow"
	}
	return "deny"
}

// Cause says what made a decision.
type Cause int

// Causes.
const (
	// CauseRule: a rule matched; By names it.
	CauseRule Cause = iota
	// CauseDefaultDeny: no rule matched in an enrolled namespace.
	CauseDefaultDeny
	// CauseNotEnrolled: the destination namespace is not enrolled.
	CauseNotEnrolled
	// CauseBrokenPolicy: a deny policy that does not compile selects the
	// destination, and denies everything (fail closed); By names it.
	CauseBrokenPolicy
)

// RuleRef names a policy and one of its rules.
type RuleRef struct {
	Namespace, Policy, Rule string
}

// IsZero reports whether r names nothing.
func (r RuleRef) IsZero() bool { return r.Policy == "" }

func (r RuleRef) String() string {
	if r.Rule == "" {
		return r.Namespace + "/" + r.Policy
	}
	return r.Namespace + "/" + r.Policy + " rule " + r.Rule
}

// Decision is the engine's answer.
type Decision struct {
	// Allowed: let the request through.
	Allowed bool
	// Verdict is what the policies decided. It differs from Allowed only
	// when the destination namespace is enrolled in audit mode.
	Verdict Verdict
	// Mode is the destination namespace's mode.
	Mode v1alpha1.Mode
	// Cause and By say what decided.
	Cause Cause
	By    RuleRef
	// Audit is set when audit-mode policies, enforced, would have decided
	// otherwise: AuditVerdict is what they would have done, AuditBy which
	// rule would have done it.
	Audit        bool
	AuditVerdict Verdict
	AuditBy      RuleRef
}

// Reason says in a sentence why, for the person who was denied or who
// reads the audit trail.
func (d Decision) Reason() string {
	var s string
	switch d.Cause {
	case CauseNotEnrolled:
		return "namespace not enrolled: kzero does not decide"
	case CauseDefaultDeny:
		s = "no rule matched: default deny"
	case CauseBrokenPolicy:
		s = "denied: policy " + d.By.Namespace + "/" + d.By.Policy + " does not compile and denies everything it selects until it is fixed"
	case CauseRule:
		if d.Verdict == Allow {
			s = "allowed by " + d.By.String()
		} else {
			s = "denied by " + d.By.String()
		}
	}
	if d.Mode == v1alpha1.ModeAudit && d.Verdict == Deny {
		s += " (namespace in audit mode: allowed)"
	}
	if d.Audit {
		s += "; audit-mode " + d.AuditBy.String() + " would " + d.AuditVerdict.String()
	}
	return s
}
