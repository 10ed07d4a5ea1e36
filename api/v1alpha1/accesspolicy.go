package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Group, version and kind of AccessPolicy.
const (
	Group   = "kzero.dev"
	Version = "v1alpha1"
	Kind    = "AccessPolicy"
	// Resource is the plural resource name.
	Resource = "accesspolicies"
)

// AccessPolicy says who may reach the workloads it selects, in its own
// namespace, and how. Allow rules let requests through; deny rules stop
// them and win over allow; a request in an enrolled namespace that no rule
// allows is denied.
type AccessPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   AccessPolicySpec   `json:"spec"`
	Status AccessPolicyStatus `json:"status,omitempty"`
}

// AccessPolicyList is a list of AccessPolicies.
type AccessPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []AccessPolicy `json:"items"`
}

// AccessPolicySpec is what a policy selects and decides.
type AccessPolicySpec struct {
	// Selector picks the destination workloads, in the policy's namespace,
	// that the policy applies to. An empty selector picks every workload of
	// the namespace.
	Selector WorkloadSelector `json:"selector,omitempty"`
	// Action is Allow (the default) or Deny. Deny wins over Allow.
	Action Action `json:"action,omitempty"`
	// Mode is Enforce (the default) or Audit: an audit-mode policy changes
	// no decision, but every decision records what it would have changed.
	Mode Mode `json:"mode,omitempty"`
	// Rules: a request matches the policy when it matches any rule.
	Rules []Rule `json:"rules"`
}

// WorkloadSelector picks workloads by labels and service accounts; a
// workload must match both when both are given.
type WorkloadSelector struct {
	// MatchLabels: every label must be on the workload's pod.
	MatchLabels map[string]string `json:"matchLabels,omitempty"`
	// ServiceAccounts: the workload runs as one of these (names in the
	// policy's namespace).
	ServiceAccounts []string `json:"serviceAccounts,omitempty"`
}

// Action is what a matching rule does.
type Action string

// Actions.
const (
	ActionAllow Action = "Allow"
	ActionDeny  Action = "Deny"
)

// Mode says whether a policy's decisions are enforced.
type Mode string

// Modes.
const (
	ModeEnforce Mode = "Enforce"
	ModeAudit   Mode = "Audit"
)

// Rule matches a request when it matches one of From (or From is empty),
// one of To (or To is empty), and When (or When is empty).
type Rule struct {
	// Name identifies the rule in decisions and audit events; rules
	// without one are named by their index, rules[i].
	Name string `json:"name,omitempty"`
	// From lists sources; a request matches when its source matches any.
	// Empty means any source.
	From []Source `json:"from,omitempty"`
	// To lists what may be reached; a request matches when it matches any.
	// Empty means every port and request.
	To []Destination `json:"to,omitempty"`
	// When is a CEL expression over the request's attributes that must be
	// true (see docs/policy.md for the variables).
	When string `json:"when,omitempty"`
}

// Source is who sends a request. Every field that is set must match.
type Source struct {
	// SPIFFEIDs of the peer workload: exact, or patterns where * matches
	// within one path segment and ** matches across segments.
	SPIFFEIDs []string `json:"spiffeIDs,omitempty"`
	// Namespaces the peer workload runs in.
	Namespaces []string `json:"namespaces,omitempty"`
	// ServiceAccounts the peer runs as: "namespace/name", or "name" for the
	// policy's own namespace.
	ServiceAccounts []string `json:"serviceAccounts,omitempty"`
	// User is the end user the gateway authenticated.
	User *UserMatch `json:"user,omitempty"`
}

// UserMatch matches the end user of a request that came through the
// gateway. Every field that is set must match.
type UserMatch struct {
	// Issuer of the user's token (OIDC iss), exactly.
	Issuer string `json:"issuer,omitempty"`
	// Subjects: the token's sub is one of these.
	Subjects []string `json:"subjects,omitempty"`
	// Claims: each claim equals the value, or is a list that contains it.
	Claims map[string]string `json:"claims,omitempty"`
}

// Destination is what a request reaches. Every field that is set must
// match; methods, paths and hosts apply to HTTP requests.
type Destination struct {
	// Ports of the destination workload.
	Ports []int32 `json:"ports,omitempty"`
	// Methods of the HTTP request, upper case.
	Methods []string `json:"methods,omitempty"`
	// Paths of the HTTP request.
	Paths []PathMatch `json:"paths,omitempty"`
	// Hosts of the HTTP request (the Host header or :authority): exact, or
	// *.suffix for any subdomain.
	Hosts []string `json:"hosts,omitempty"`
}

// PathMatch matches a request path one way: exactly one field is set.
type PathMatch struct {
	// Exact path.
	Exact string `json:"exact,omitempty"`
	// Prefix of the path, matched on whole segments: /api matches /api and
	// /api/x, not /apix.
	Prefix string `json:"prefix,omitempty"`
	// Glob: * matches within one segment, ** across segments.
	Glob string `json:"glob,omitempty"`
}

// AccessPolicyStatus reports whether the policy is in force.
type AccessPolicyStatus struct {
	// ObservedGeneration is the generation the conditions describe.
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Ready is True when the policy compiled and is enforced;
	// False with reason CompileFailed and the errors otherwise.
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}
