//go:build e2e

package e2e

import (
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"kzero.dev/kzero/internal/policy"
	"kzero.dev/kzero/internal/policysync"
)

// TestPolicyStatus: a policy that the API server accepts but the engine
// cannot compile (a CEL condition that is not a bool) is reported on the
// object's status, and a good one is Ready; the engine Sync returns fails
// closed on the broken deny policy.
func TestPolicyStatus(t *testing.T) {
	dyn, err := dynamic.NewForConfig(kube.Config)
	if err != nil {
		t.Fatal(err)
	}
	installCRD(t, dyn)
	ns := namespace(t)
	for _, p := range []map[string]any{
		{"name": "good", "spec": map[string]any{"rules": []any{map[string]any{"name": "any", "from": []any{map[string]any{"namespaces": []any{"web"}}}}}}},
		{"name": "broken", "spec": map[string]any{"action": "Deny", "rules": []any{map[string]any{"name": "bad-when", "when": "request.path"}}}},
	} {
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "kzero.dev/v1alpha1", "kind": "AccessPolicy",
			"metadata": map[string]any{"name": p["name"], "namespace": ns}, "spec": p["spec"],
		}}
		if _, err := dyn.Resource(policysync.GVR).Namespace(ns).Create(t.Context(), u, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create %s: %v", p["name"], err)
		}
	}
	s := &policysync.Syncer{Client: dyn, TrustDomain: spiffeid.RequireTrustDomainFromString("cluster.local")}
	engine, res, err := s.Sync(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if res.Policies != 2 || res.Updated != 2 || res.NotReady != 1 {
		t.Errorf("Sync = %+v, want 2 policies, 2 updated, 1 not ready", res)
	}
	want := map[string][2]string{
		"good":   {"True", "the policy compiled and is in force"},
		"broken": {"False", "the policy does not compile: spec.rules[0].when: has type string; a condition must be a bool; until it is fixed it denies every request to the workloads it selects"},
	}
	for name, w := range want {
		got, err := dyn.Resource(policysync.GVR).Namespace(ns).Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
		if len(conds) != 1 {
			t.Fatalf("%s: conditions %v", name, conds)
		}
		c := conds[0].(map[string]any)
		if c["type"] != "Ready" || c["status"] != w[0] || c["message"] != w[1] {
			t.Errorf("%s: condition %v, want Ready=%s %q", name, c, w[0], w[1])
		}
	}
	// A second Sync changes nothing.
	if _, res, err := s.Sync(t.Context()); err != nil || res.Updated != 0 {
		t.Errorf("second Sync = %+v, %v; want nothing updated", res, err)
	}
	r := policy.Request{Source: spiffeid.RequireFromString("spiffe://cluster.local/ns/web/sa/frontend"),
		Destination: policy.Workload{Namespace: ns, ServiceAccount: "cart"}, Port: 8080}
	if d := engine.Decide(&r); d.Allowed || d.Cause != policy.CauseBrokenPolicy {
		t.Errorf("decision with the broken deny policy in force: allowed %v, %q", d.Allowed, d.Reason())
	}
}
