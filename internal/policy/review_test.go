package policy_test

import (
	"fmt"
	"strings"
	"testing"

	"kzero.dev/kzero/api/v1alpha1"
	"kzero.dev/kzero/internal/policy"
)

// Cases found in review: each once let a request through that a policy
// meant to stop, or accepted what the API server refuses.
func TestFailClosedCases(t *testing.T) {
	denyAdmin := ap("shop", "deny-admin", v1alpha1.AccessPolicySpec{Action: v1alpha1.ActionDeny,
		Rules: []v1alpha1.Rule{{Name: "admin", To: []v1alpha1.Destination{{Paths: []v1alpha1.PathMatch{{Prefix: "/api/admin"}}}}}}})
	allowAll := ap("shop", "allow-all", v1alpha1.AccessPolicySpec{Rules: []v1alpha1.Rule{{Name: "any", From: []v1alpha1.Source{{Namespaces: []string{"web"}}}}}})
	denySuspended := ap("shop", "deny-suspended", v1alpha1.AccessPolicySpec{Action: v1alpha1.ActionDeny,
		Rules: []v1alpha1.Rule{{Name: "suspended", From: []v1alpha1.Source{{User: &v1alpha1.UserMatch{Claims: map[string]string{"suspended": "true", "level": "3"}}}}}}})
	denyCELPath := ap("shop", "deny-cel-path", v1alpha1.AccessPolicySpec{Action: v1alpha1.ActionDeny,
		Rules: []v1alpha1.Rule{{Name: "admin", When: `request.path.startsWith("/admin")`}}})
	allowCELMethod := ap("shop", "allow-cel-get", v1alpha1.AccessPolicySpec{
		Rules: []v1alpha1.Rule{{Name: "get", When: `request.method == "GET"`}}})
	brokenSelector := ap("shop", "broken-selector", v1alpha1.AccessPolicySpec{Action: v1alpha1.ActionDeny,
		Selector: v1alpha1.WorkloadSelector{MatchLabels: map[string]string{"app": "bad value!"}},
		Rules:    []v1alpha1.Rule{{Name: "all"}}})

	for _, tc := range []struct {
		name     string
		policies []v1alpha1.AccessPolicy
		req      func(*policy.Request)
		reason   string
	}{
		{"double slash", []v1alpha1.AccessPolicy{allowAll, denyAdmin}, func(r *policy.Request) { r.Path = "/api//admin" }, "denied by shop/deny-admin rule admin"},
		{"dot-dot", []v1alpha1.AccessPolicy{allowAll, denyAdmin}, func(r *policy.Request) { r.Path = "/api/x/../admin" }, "denied by shop/deny-admin rule admin"},
		{"query", []v1alpha1.AccessPolicy{allowAll, denyAdmin}, func(r *policy.Request) { r.Path = "/api/admin?x=1" }, "denied by shop/deny-admin rule admin"},
		{"trailing slash is clean", []v1alpha1.AccessPolicy{allowAll, denyAdmin}, func(r *policy.Request) { r.Path = "/api/items/" }, "allowed by shop/allow-all rule any"},
		{"boolean and number claims", []v1alpha1.AccessPolicy{allowAll, denySuspended}, func(r *policy.Request) {
			r.User = &policy.User{Issuer: "https://idp", Subject: "ann", Claims: map[string]any{"suspended": true, "level": 3.0}}
		}, "denied by shop/deny-suspended rule suspended"},
		{"CEL on the path of a TCP connection fails closed", []v1alpha1.AccessPolicy{allowAll, denyCELPath}, func(r *policy.Request) { r.HTTP = false }, "denied by shop/deny-cel-path rule admin"},
		{"CEL on the method of a TCP connection does not allow", []v1alpha1.AccessPolicy{allowCELMethod}, func(r *policy.Request) { r.HTTP = false }, "no rule matched: default deny"},
		{"a deny policy with a broken selector covers the namespace", []v1alpha1.AccessPolicy{allowAll, brokenSelector}, nil,
			"denied: policy shop/broken-selector does not compile and denies everything it selects until it is fixed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, _ := policy.Compile(tc.policies, policy.Options{TrustDomain: td})
			r := cart(8080)
			if tc.req != nil {
				tc.req(&r)
			}
			if d := e.Decide(&r); d.Reason() != tc.reason {
				t.Errorf("Decide = %q, want %q", d.Reason(), tc.reason)
			}
		})
	}
}

func TestCompileRefusals(t *testing.T) {
	if _, err := policy.Compile(nil, policy.Options{}); err == nil ||
		err.Error() != "policy: Options.TrustDomain is required: namespace and service account matches need the cluster's trust domain" {
		t.Errorf("Compile without a trust domain: %v", err)
	}
	many := make([]v1alpha1.Rule, 65)
	for i := range many {
		many[i].Name = fmt.Sprintf("r%d", i)
	}
	for _, tc := range []struct {
		name string
		p    v1alpha1.AccessPolicy
		want string // "" for no problem
	}{
		{"wildcard in the trust domain", ap("shop", "td", v1alpha1.AccessPolicySpec{Rules: []v1alpha1.Rule{{From: []v1alpha1.Source{{SPIFFEIDs: []string{"spiffe://cluster.local*/ns/web/sa/x"}}}}}}),
			`policy shop/td: spec.rules[0].from[0].spiffeIDs[0]: pattern "spiffe://cluster.local*/ns/web/sa/x": wildcards may stand only in the path, never in the trust domain "cluster.local*"`},
		{"too many rules", ap("shop", "many", v1alpha1.AccessPolicySpec{Rules: many}),
			"policy shop/many: spec.rules: has 65 rules; at most 64: split the policy"},
		{"a method with a dash, as the CRD allows", ap("shop", "msearch", v1alpha1.AccessPolicySpec{Rules: []v1alpha1.Rule{{To: []v1alpha1.Destination{{Methods: []string{"M-SEARCH"}}}}}}), ""},
		{"CEL over a list claim", ap("shop", "groups", v1alpha1.AccessPolicySpec{Rules: []v1alpha1.Rule{{When: `"admins" in user.claims["groups"]`}}}), ""},
		{"a name that is not a DNS subdomain", ap("shop", "A B", v1alpha1.AccessPolicySpec{Rules: []v1alpha1.Rule{{}}}),
			`policy shop/A B: metadata.name: "A B" is not an object name`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, _ := policy.Compile([]v1alpha1.AccessPolicy{tc.p}, policy.Options{TrustDomain: td})
			var got []string
			for _, p := range e.Problems() {
				got = append(got, p.Error())
			}
			if tc.want == "" && len(got) > 0 || tc.want != "" && (len(got) == 0 || !strings.HasPrefix(got[0], tc.want)) {
				t.Errorf("problems %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParseIsCaseSensitive(t *testing.T) {
	_, err := policy.Parse([]byte("apiVersion: kzero.dev/v1alpha1\nkind: AccessPolicy\nmetadata: {name: p, namespace: shop}\nspec: {Action: Deny, rules: [{name: r}]}\n"))
	if err == nil || !strings.Contains(err.Error(), `unknown field "spec.Action"`) || !strings.Contains(err.Error(), "(field names are case-sensitive)") {
		t.Errorf("Parse of spec.Action: %v", err)
	}
}
