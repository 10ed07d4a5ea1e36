package policy_test

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kzero.dev/kzero/api/v1alpha1"
	"kzero.dev/kzero/internal/policy"
)

func TestStatus(t *testing.T) {
	good := ap("shop", "good", v1alpha1.AccessPolicySpec{Rules: []v1alpha1.Rule{{Name: "any"}}})
	bad := ap("shop", "bad", v1alpha1.AccessPolicySpec{Action: v1alpha1.ActionDeny, Rules: []v1alpha1.Rule{{When: "request.path"}}})
	good.Generation, bad.Generation = 3, 7
	e, _ := policy.Compile([]v1alpha1.AccessPolicy{good, bad}, policy.Options{TrustDomain: td})
	t1 := metav1.NewTime(time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC))

	st := policy.Status(&good, e.Problems(), t1)
	if c := st.Conditions[0]; st.ObservedGeneration != 3 || c.Status != metav1.ConditionTrue || c.Reason != "Compiled" || c.ObservedGeneration != 3 {
		t.Errorf("good policy status %+v", st)
	}
	st = policy.Status(&bad, e.Problems(), t1)
	want := "the policy does not compile: spec.rules[0].when: has type string; a condition must be a bool; until it is fixed it denies every request to the workloads it selects"
	if c := st.Conditions[0]; c.Status != metav1.ConditionFalse || c.Reason != "CompileFailed" || c.Message != want {
		t.Errorf("bad policy status %+v", st)
	}
	// The transition time stays while the condition does.
	bad.Status = st
	again := policy.Status(&bad, e.Problems(), metav1.NewTime(t1.Add(time.Hour)))
	if !again.Conditions[0].LastTransitionTime.Equal(&t1) {
		t.Errorf("transition time moved to %v", again.Conditions[0].LastTransitionTime)
	}
}
