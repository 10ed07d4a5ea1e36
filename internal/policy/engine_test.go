package policy_test

import (
	"errors"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"kzero.dev/kzero/api/v1alpha1"
	"kzero.dev/kzero/internal/policy"
)

var td = spiffeid.RequireTrustDomainFromString("cluster.local")

func ap(ns, name string, spec v1alpha1.AccessPolicySpec) v1alpha1.AccessPolicy {
	return v1alpha1.AccessPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}
}

func id(s string) spiffeid.ID { return spiffeid.RequireFromString(s) }

func cart(port int32) policy.Request {
	return policy.Request{
		Source:      id("spiffe://cluster.local/ns/web/sa/frontend"),
		Destination: policy.Workload{Namespace: "shop", ServiceAccount: "cart", Labels: map[string]string{"app": "cart", "tier": "backend"}},
		Port:        port, HTTP: true, Method: "GET", Path: "/api/items/7", Host: "cart.shop.svc",
	}
}

func compile(t *testing.T, ps ...v1alpha1.AccessPolicy) *policy.Engine {
	t.Helper()
	e, err := policy.Compile(ps, policy.Options{TrustDomain: td})
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return e
}

func TestSemantics(t *testing.T) {
	allowFrontend := ap("shop", "allow-frontend", v1alpha1.AccessPolicySpec{
		Selector: v1alpha1.WorkloadSelector{MatchLabels: map[string]string{"app": "cart"}},
		Rules: []v1alpha1.Rule{{Name: "reads",
			From: []v1alpha1.Source{{ServiceAccounts: []string{"web/frontend"}}},
			To:   []v1alpha1.Destination{{Ports: []int32{8080}, Methods: []string{"GET"}, Paths: []v1alpha1.PathMatch{{Glob: "/api/**"}}}},
		}},
	})
	denyAdmin := ap("shop", "deny-admin", v1alpha1.AccessPolicySpec{
		Action: v1alpha1.ActionDeny,
		Rules: []v1alpha1.Rule{{Name: "admin",
			To: []v1alpha1.Destination{{Paths: []v1alpha1.PathMatch{{Prefix: "/api/admin"}}}},
		}},
	})
	auditDenyWeb := ap("shop", "audit-deny-web", v1alpha1.AccessPolicySpec{
		Action: v1alpha1.ActionDeny, Mode: v1alpha1.ModeAudit,
		Rules: []v1alpha1.Rule{{Name: "web", From: []v1alpha1.Source{{Namespaces: []string{"web"}}}}},
	})
	auditAllowAll := ap("shop", "audit-allow", v1alpha1.AccessPolicySpec{
		Mode:  v1alpha1.ModeAudit,
		Rules: []v1alpha1.Rule{{Name: "any"}},
	})
	users := ap("shop", "users", v1alpha1.AccessPolicySpec{
		Selector: v1alpha1.WorkloadSelector{ServiceAccounts: []string{"cart"}},
		Rules: []v1alpha1.Rule{{Name: "admins",
			From: []v1alpha1.Source{{User: &v1alpha1.UserMatch{Issuer: "https://idp", Claims: map[string]string{"groups": "admins"}}}},
		}},
	})
	cel := ap("shop", "prod-only", v1alpha1.AccessPolicySpec{
		Rules: []v1alpha1.Rule{{Name: "prod", When: `request.headers["x-env"] == "prod"`}},
	})
	idGlob := ap("shop", "id-glob", v1alpha1.AccessPolicySpec{
		Rules: []v1alpha1.Rule{{Name: "web-any", From: []v1alpha1.Source{{SPIFFEIDs: []string{"spiffe://cluster.local/ns/web/sa/*"}}}}},
	})

	for _, tc := range []struct {
		name     string
		policies []v1alpha1.AccessPolicy
		req      func(*policy.Request)
		allowed  bool
		reason   string
	}{
		{"no policy: default deny", nil, nil, false, "no rule matched: default deny"},
		{"allow rule", []v1alpha1.AccessPolicy{allowFrontend}, nil, true, "allowed by shop/allow-frontend rule reads"},
		{"wrong port", []v1alpha1.AccessPolicy{allowFrontend}, func(r *policy.Request) { r.Port = 9090 }, false, "no rule matched: default deny"},
		{"wrong method", []v1alpha1.AccessPolicy{allowFrontend}, func(r *policy.Request) { r.Method = "DELETE" }, false, "no rule matched: default deny"},
		{"path outside the glob", []v1alpha1.AccessPolicy{allowFrontend}, func(r *policy.Request) { r.Path = "/apix" }, false, "no rule matched: default deny"},
		{"other service account", []v1alpha1.AccessPolicy{allowFrontend}, func(r *policy.Request) { r.Source = id("spiffe://cluster.local/ns/web/sa/admin") }, false, "no rule matched: default deny"},
		{"same name in another trust domain", []v1alpha1.AccessPolicy{allowFrontend}, func(r *policy.Request) { r.Source = id("spiffe://evil.example/ns/web/sa/frontend") }, false, "no rule matched: default deny"},
		{"selector does not select", []v1alpha1.AccessPolicy{allowFrontend}, func(r *policy.Request) { r.Destination.Labels = map[string]string{"app": "other"} }, false, "no rule matched: default deny"},
		{"L7 allow rule does not match TCP", []v1alpha1.AccessPolicy{allowFrontend}, func(r *policy.Request) { r.HTTP = false }, false, "no rule matched: default deny"},
		{"deny wins over allow", []v1alpha1.AccessPolicy{allowFrontend, denyAdmin}, func(r *policy.Request) { r.Path = "/api/admin/users" }, false, "denied by shop/deny-admin rule admin"},
		{"deny prefix is on whole segments", []v1alpha1.AccessPolicy{allowFrontend, denyAdmin}, func(r *policy.Request) { r.Path = "/api/administrators" }, true, "allowed by shop/allow-frontend rule reads"},
		{"L7 deny rule matches TCP (fail closed)", []v1alpha1.AccessPolicy{denyAdmin}, func(r *policy.Request) { r.HTTP = false }, false, "denied by shop/deny-admin rule admin"},
		{"audit deny records, does not deny", []v1alpha1.AccessPolicy{allowFrontend, auditDenyWeb}, nil, true,
			"allowed by shop/allow-frontend rule reads; audit-mode shop/audit-deny-web rule web would deny"},
		{"audit allow records, does not allow", []v1alpha1.AccessPolicy{auditAllowAll}, nil, false,
			"no rule matched: default deny; audit-mode shop/audit-allow rule any would allow"},
		{"end user with the claim", []v1alpha1.AccessPolicy{users}, func(r *policy.Request) {
			r.User = &policy.User{Issuer: "https://idp", Subject: "ann", Claims: map[string]any{"groups": []any{"dev", "admins"}}}
		}, true, "allowed by shop/users rule admins"},
		{"end user without the claim", []v1alpha1.AccessPolicy{users}, func(r *policy.Request) {
			r.User = &policy.User{Issuer: "https://idp", Subject: "bob", Claims: map[string]any{"groups": []any{"dev"}}}
		}, false, "no rule matched: default deny"},
		{"end user of another issuer", []v1alpha1.AccessPolicy{users}, func(r *policy.Request) {
			r.User = &policy.User{Issuer: "https://evil", Subject: "ann", Claims: map[string]any{"groups": "admins"}}
		}, false, "no rule matched: default deny"},
		{"CEL true", []v1alpha1.AccessPolicy{cel}, func(r *policy.Request) { r.Headers = map[string]string{"x-env": "prod"} }, true, "allowed by shop/prod-only rule prod"},
		{"CEL false", []v1alpha1.AccessPolicy{cel}, func(r *policy.Request) { r.Headers = map[string]string{"x-env": "dev"} }, false, "no rule matched: default deny"},
		{"CEL error fails closed for allow", []v1alpha1.AccessPolicy{cel}, nil, false, "no rule matched: default deny"},
		{"SPIFFE ID glob", []v1alpha1.AccessPolicy{idGlob}, nil, true, "allowed by shop/id-glob rule web-any"},
		{"SPIFFE ID glob is one segment", []v1alpha1.AccessPolicy{idGlob}, func(r *policy.Request) { r.Source = id("spiffe://cluster.local/ns/web/sa/frontend/extra") }, false, "no rule matched: default deny"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := compile(t, tc.policies...)
			r := cart(8080)
			if tc.req != nil {
				tc.req(&r)
			}
			d := e.Decide(&r)
			if d.Allowed != tc.allowed || d.Reason() != tc.reason {
				t.Errorf("Decide = allowed %v, %q\nwant allowed %v, %q", d.Allowed, d.Reason(), tc.allowed, tc.reason)
			}
		})
	}
}

func TestNamespaceModes(t *testing.T) {
	denyAll := ap("shop", "deny-all", v1alpha1.AccessPolicySpec{Action: v1alpha1.ActionDeny, Rules: []v1alpha1.Rule{{Name: "all"}}})
	modes := map[string]v1alpha1.Mode{"shop": v1alpha1.ModeAudit}
	e, err := policy.Compile([]v1alpha1.AccessPolicy{denyAll}, policy.Options{TrustDomain: td, Enrollment: func(ns string) (v1alpha1.Mode, bool) {
		m, ok := modes[ns]
		return m, ok
	}})
	if err != nil {
		t.Fatal(err)
	}
	r := cart(8080)
	d := e.Decide(&r)
	if !d.Allowed || d.Verdict != policy.Deny || d.Reason() != "denied by shop/deny-all rule all (namespace in audit mode: allowed)" {
		t.Errorf("audit namespace: allowed %v verdict %v %q", d.Allowed, d.Verdict, d.Reason())
	}
	r.Destination.Namespace = "elsewhere"
	d = e.Decide(&r)
	if !d.Allowed || d.Cause != policy.CauseNotEnrolled || d.Reason() != "namespace not enrolled: kzero does not decide" {
		t.Errorf("not enrolled: allowed %v %q", d.Allowed, d.Reason())
	}
}

func TestCompileErrors(t *testing.T) {
	bad := []v1alpha1.AccessPolicy{
		ap("shop", "bad-allow", v1alpha1.AccessPolicySpec{Rules: []v1alpha1.Rule{
			{Name: "a", When: `request.port + "x"`},
			{Name: "a", To: []v1alpha1.Destination{{Ports: []int32{0}, Methods: []string{"get"}, Paths: []v1alpha1.PathMatch{{Exact: "/x", Prefix: "/y"}, {Glob: "no-slash"}}}}},
			{From: []v1alpha1.Source{{}, {SPIFFEIDs: []string{"spiffe://cluster.local/ns/../x", "cluster.local/*"}, ServiceAccounts: []string{"a/b/c"}}}},
			{When: `request.path`},
			{When: `request.headers.all(k, request.headers.all(j, request.headers.all(i, k + j + i != "")))`},
		}}),
		ap("shop", "bad-deny", v1alpha1.AccessPolicySpec{Action: v1alpha1.ActionDeny, Rules: []v1alpha1.Rule{{When: "nope("}}}),
		ap("shop", "no-rules", v1alpha1.AccessPolicySpec{}),
	}
	e, err := policy.Compile(bad, policy.Options{TrustDomain: td})
	if !errors.Is(err, policy.ErrCompile) {
		t.Fatalf("Compile error = %v, want ErrCompile", err)
	}
	var got []string
	for _, p := range e.Problems() {
		got = append(got, p.Error())
	}
	want := []string{
		"policy shop/bad-allow: spec.rules[0].when: does not compile: ERROR: <input>:1:14: found no matching overload for '_+_' applied to '(int, string)'\n | request.port + \"x\"\n | .............^",
		`policy shop/bad-allow: spec.rules[1].name: "a" is also the name of rules[0]: rule names must be unique in a policy`,
		"policy shop/bad-allow: spec.rules[1].to[0].ports[0]: 0 is not a port: use 1 to 65535",
		`policy shop/bad-allow: spec.rules[1].to[0].methods[0]: "get" is not an HTTP method: write it in upper case, such as GET`,
		"policy shop/bad-allow: spec.rules[1].to[0].paths[0]: sets 2 of exact, prefix and glob: set exactly one",
		`policy shop/bad-allow: spec.rules[1].to[0].paths[1]: "no-slash" does not start with /`,
		"policy shop/bad-allow: spec.rules[2].from[0]: sets nothing: name spiffeIDs, namespaces, serviceAccounts or user (to allow any source, leave from out)",
		`policy shop/bad-allow: spec.rules[2].from[1].spiffeIDs[0]: "spiffe://cluster.local/ns/../x" is not a SPIFFE ID: path cannot contain dot segments`,
		`policy shop/bad-allow: spec.rules[2].from[1].spiffeIDs[1]: pattern "cluster.local/*" must start with spiffe://<trust-domain>/`,
		`policy shop/bad-allow: spec.rules[2].from[1].serviceAccounts[0]: "a/b/c" is not a service account: write namespace/name, or name for this namespace`,
		"policy shop/bad-allow: spec.rules[3].when: has type string; a condition must be a bool",
		"policy shop/bad-allow: spec.rules[4].when: may cost up to",
		"policy shop/bad-deny: spec.rules[0].when: does not compile: ERROR: <input>:1:6: Syntax error: mismatched input '<EOF>'",
		"policy shop/no-rules: spec.rules: is empty: a policy needs at least one rule (a rule with no fields matches every request)",
	}
	if len(got) != len(want) {
		t.Fatalf("%d problems, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("problem %d =\n  %s\nwant\n  %s", i, got[i], want[i])
		}
	}
	// The broken allow policy allows nothing; the broken deny policy denies
	// everything it selects.
	r := cart(8080)
	if d := e.Decide(&r); d.Allowed || d.Cause != policy.CauseBrokenPolicy ||
		d.Reason() != "denied: policy shop/bad-deny does not compile and denies everything it selects until it is fixed" {
		t.Errorf("Decide with a broken deny policy: allowed %v, %q", d.Allowed, d.Reason())
	}
}
