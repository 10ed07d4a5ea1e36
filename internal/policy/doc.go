// Package policy decides whether a request may reach a workload: the one
// engine the node tunnel and the gateway both call.
//
// Compile turns AccessPolicies (kzero.dev/v1alpha1) into an Engine once:
// policies are indexed by destination namespace, service account and label,
// their rules by port, their CEL conditions compiled and cost-checked, so
// that Engine.Decide costs a few map lookups and no allocation when no CEL
// condition is involved. A policy that does not compile is reported by
// Compile, never skipped silently: a broken deny policy denies everything it
// selects (fail closed), a broken allow policy allows nothing.
//
// The semantics, in order: a destination namespace that is not enrolled is
// not kzero's business (allowed); a matching enforce-mode deny rule denies;
// otherwise a matching enforce-mode allow rule allows; otherwise the request
// is denied by default. Audit-mode policies change no decision but each
// decision records what they would have changed, and a namespace enrolled in
// audit mode lets everything through while recording what enforcement would
// have done. See docs/policy.md.
package policy
