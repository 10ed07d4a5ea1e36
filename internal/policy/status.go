package policy

import (
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kzero.dev/kzero/api/v1alpha1"
)

// Condition type and reasons of AccessPolicy status.
const (
	ConditionReady      = "Ready"
	ReasonCompiled      = "Compiled"
	ReasonCompileFailed = "CompileFailed"
)

// brokenEffect says what a policy that does not compile does, as the
// compiler treats it: anything but Allow counts as deny (fail closed).
func brokenEffect(spec *v1alpha1.AccessPolicySpec) string {
	deny := spec.Action != v1alpha1.ActionAllow && spec.Action != ""
	audit := spec.Mode == v1alpha1.ModeAudit
	switch {
	case deny && audit:
		return "it is in audit mode and changes nothing, but every decision on the workloads it selects records that it would deny"
	case deny:
		return "it denies every request to the workloads it selects"
	}
	return "it allows nothing"
}

// Status returns the status p should have given the problems Compile found
// (of every policy; those of p are picked out). now stamps a condition that
// changes; a condition that stays keeps its time.
func Status(p *v1alpha1.AccessPolicy, problems []*PolicyError, now metav1.Time) v1alpha1.AccessPolicyStatus {
	var mine []string
	for _, pe := range problems {
		if pe.Namespace == p.Namespace && pe.Name == p.Name {
			mine = append(mine, pe.Field+": "+pe.Message)
		}
	}
	c := metav1.Condition{Type: ConditionReady, Status: metav1.ConditionTrue, Reason: ReasonCompiled,
		Message: "the policy compiled and is in force", ObservedGeneration: p.Generation, LastTransitionTime: now}
	if len(mine) > 0 {
		c.Status, c.Reason = metav1.ConditionFalse, ReasonCompileFailed
		c.Message = "the policy does not compile: " + strings.Join(mine, "; ") + "; until it is fixed " + brokenEffect(&p.Spec)
	}
	for _, old := range p.Status.Conditions {
		if old.Type == c.Type && old.Status == c.Status {
			c.LastTransitionTime = old.LastTransitionTime
		}
	}
	return v1alpha1.AccessPolicyStatus{ObservedGeneration: p.Generation, Conditions: []metav1.Condition{c}}
}
