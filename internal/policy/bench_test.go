package policy_test

import (
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kzero.dev/kzero/api/v1alpha1"
	"kzero.dev/kzero/internal/policy"
)

// benchPolicies makes 1,000 workloads in 10 namespaces, each selected by
// one policy (half by service account, half by label) of 10 rules: 10,000
// rules. Every rule is on port 8080 and differs by source, so a decision
// scans a workload's whole rule list; the request matches the last rule.
func benchPolicies(when string) []v1alpha1.AccessPolicy {
	var ps []v1alpha1.AccessPolicy
	for w := 0; w < 1000; w++ {
		ns := fmt.Sprintf("ns%d", w%10)
		spec := v1alpha1.AccessPolicySpec{}
		if w%2 == 0 {
			spec.Selector.ServiceAccounts = []string{fmt.Sprintf("w%d", w)}
		} else {
			spec.Selector.MatchLabels = map[string]string{"app": fmt.Sprintf("w%d", w)}
		}
		for r := 0; r < 10; r++ {
			rule := v1alpha1.Rule{
				Name: fmt.Sprintf("client%d", r),
				From: []v1alpha1.Source{{SPIFFEIDs: []string{fmt.Sprintf("spiffe://cluster.local/ns/%s/sa/client%d", ns, r)}}},
				To:   []v1alpha1.Destination{{Ports: []int32{8080}, Methods: []string{"GET"}, Paths: []v1alpha1.PathMatch{{Glob: "/api/**"}}}},
			}
			if r == 9 {
				rule.When = when
			}
			spec.Rules = append(spec.Rules, rule)
		}
		ps = append(ps, v1alpha1.AccessPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("w%d", w)}, Spec: spec})
	}
	return ps
}

func benchDecide(b *testing.B, when string) {
	e, err := policy.Compile(benchPolicies(when), policy.Options{TrustDomain: td})
	if err != nil {
		b.Fatal(err)
	}
	if e.Rules() != 10000 {
		b.Fatalf("%d rules", e.Rules())
	}
	reqs := []policy.Request{}
	for _, w := range []int{0, 1, 998, 999} { // by service account and by label
		ns := fmt.Sprintf("ns%d", w%10)
		reqs = append(reqs, policy.Request{
			Source:      id(fmt.Sprintf("spiffe://cluster.local/ns/%s/sa/client9", ns)),
			Destination: policy.Workload{Namespace: ns, ServiceAccount: fmt.Sprintf("w%d", w), Labels: map[string]string{"app": fmt.Sprintf("w%d", w), "pod-template-hash": "7d9f8"}},
			Port:        8080, HTTP: true, Method: "GET", Path: "/api/v1/items/42", Host: "w.svc",
			Headers: map[string]string{"x-env": "prod"},
		})
	}
	for i := range reqs {
		if d := e.Decide(&reqs[i]); !d.Allowed {
			b.Fatalf("request %d denied: %s", i, d.Reason())
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		e.Decide(&reqs[i&3])
		i++
	}
}

// BenchmarkDecide10kRules: a decision among 10,000 rules of 1,000
// workloads, with no CEL condition. Target: < 1 µs, no allocation.
func BenchmarkDecide10kRules(b *testing.B) { benchDecide(b, "") }

// BenchmarkDecide10kRulesCEL: the same, the matching rule with a CEL
// condition. Target: < 5 µs.
func BenchmarkDecide10kRulesCEL(b *testing.B) {
	benchDecide(b, `request.headers["x-env"] == "prod" && source.namespace.startsWith("ns")`)
}

func BenchmarkGlob(b *testing.B) {
	e, err := policy.Compile([]v1alpha1.AccessPolicy{{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "g"},
		Spec: v1alpha1.AccessPolicySpec{Rules: []v1alpha1.Rule{{To: []v1alpha1.Destination{{Paths: []v1alpha1.PathMatch{{Glob: "/api/*/items/**/detail"}}}}}}}}},
		policy.Options{TrustDomain: td})
	if err != nil {
		b.Fatal(err)
	}
	r := policy.Request{Destination: policy.Workload{Namespace: "a"}, HTTP: true, Path: "/api/v1/items/a/b/c/detail"}
	b.ReportAllocs()
	for b.Loop() {
		e.Decide(&r)
	}
}
