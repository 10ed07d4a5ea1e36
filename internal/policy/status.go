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
		c.Message = "the policy does not compile: " + strings.Join(mine, "; ")
		if p.Spec.Action == v1alpha1.ActionDeny {
			c.Message += "; until it is fixed it denies every request to the workloads it selects"
		} else {
			c.Message += "; until it is fixed it allows nothing"
		}
	}
	for _, old := range p.Status.Conditions {
		if old.Type == c.Type && old.Status == c.Status {
			c.LastTransitionTime = old.LastTransitionTime
		}
	}
	return v1alpha1.AccessPolicyStatus{ObservedGeneration: p.Generation, Conditions: []metav1.Condition{c}}
}
