package policy_test

import (
	"os"
	"path/filepath"
	"testing"

	"kzero.dev/kzero/internal/policy"
)

// TestDocsExamplesCompile: every example policy in docs/ parses strictly
// and compiles with no problem, and the cart example decides as its
// comments say.
func TestDocsExamplesCompile(t *testing.T) {
	files, err := filepath.Glob("../../docs/examples/policies/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples found: %v", err)
	}
	var all []byte
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		ps, err := policy.Parse(data)
		if err != nil || len(ps) != 1 {
			t.Fatalf("%s: %d policies, %v", f, len(ps), err)
		}
		all = append(append(all, data...), "\n---\n"...)
	}
	ps, err := policy.Parse(all)
	if err != nil {
		t.Fatal(err)
	}
	e, err := policy.Compile(ps, policy.Options{TrustDomain: td})
	if err != nil {
		t.Fatalf("the examples do not compile: %v", err)
	}
	r := policy.Request{
		Source:      id("spiffe://cluster.local/ns/shop/sa/frontend"),
		Destination: policy.Workload{Namespace: "shop", ServiceAccount: "cart", Labels: map[string]string{"app": "cart"}},
		Port:        8080, HTTP: true, Method: "GET", Path: "/api/cart/42",
	}
	if d := e.Decide(&r); !d.Allowed || d.Reason() != "allowed by shop/cart-allow-frontend rule frontend-reads-cart" {
		t.Errorf("frontend GET /api/cart/42: allowed %v, %q", d.Allowed, d.Reason())
	}
	r.Method = "DELETE"
	if d := e.Decide(&r); d.Allowed {
		t.Errorf("frontend DELETE: allowed by %q", d.Reason())
	}
}
