package audit_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kzero.dev/kzero/api/v1alpha1"
	"kzero.dev/kzero/internal/audit"
	"kzero.dev/kzero/internal/policy"
)

// TestAccessEventFromDecisions: every kind of engine decision becomes a
// valid access event that says what happened and why.
func TestAccessEventFromDecisions(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("cluster.local")
	ps := []v1alpha1.AccessPolicy{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "allow-web"}, Spec: v1alpha1.AccessPolicySpec{
			Rules: []v1alpha1.Rule{{Name: "web", From: []v1alpha1.Source{{Namespaces: []string{"web"}}}}}}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "audit-deny-admin"}, Spec: v1alpha1.AccessPolicySpec{
			Action: v1alpha1.ActionDeny, Mode: v1alpha1.ModeAudit,
			Rules: []v1alpha1.Rule{{Name: "admin", To: []v1alpha1.Destination{{Paths: []v1alpha1.PathMatch{{Prefix: "/admin"}}}}}}}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "broken", Name: "bad-deny"}, Spec: v1alpha1.AccessPolicySpec{
			Action: v1alpha1.ActionDeny, Rules: []v1alpha1.Rule{{When: "nope("}}}},
	}
	modes := map[string]v1alpha1.Mode{"shop": v1alpha1.ModeEnforce, "trial": v1alpha1.ModeAudit, "broken": v1alpha1.ModeEnforce}
	e, _ := policy.Compile(ps, policy.Options{TrustDomain: td, Enrollment: func(ns string) (v1alpha1.Mode, bool) {
		m, ok := modes[ns]
		return m, ok
	}})
	req := func(src, ns, path string) *policy.Request {
		return &policy.Request{Source: spiffeid.RequireFromString(src),
			Destination: policy.Workload{Namespace: ns, ServiceAccount: "cart"},
			Port:        8080, HTTP: true, Method: "GET", Path: path, Host: "cart"}
	}
	for _, tc := range []struct {
		name    string
		r       *policy.Request
		outcome audit.Outcome
		want    string // the access payload, JSON
	}{
		{"allowed, with an audit finding", req("spiffe://cluster.local/ns/web/sa/frontend", "shop", "/admin/x?token=secret"), audit.OutcomeAllow,
			`{"source":{"spiffeID":"spiffe://cluster.local/ns/web/sa/frontend"},"destination":{"namespace":"shop","serviceAccount":"cart","port":8080},"protocol":"http","method":"GET","path":"/admin/x","host":"cart","verdict":"allow","mode":"enforce","enforced":true,"policy":{"namespace":"shop","name":"allow-web","rule":"web"},"audit":{"verdict":"deny","policy":{"namespace":"shop","name":"audit-deny-admin","rule":"admin"}}}`},
		{"default deny", req("spiffe://cluster.local/ns/other/sa/x", "shop", "/"), audit.OutcomeDeny,
			`{"source":{"spiffeID":"spiffe://cluster.local/ns/other/sa/x"},"destination":{"namespace":"shop","serviceAccount":"cart","port":8080},"protocol":"http","method":"GET","path":"/","host":"cart","verdict":"deny","mode":"enforce","enforced":true}`},
		{"audit namespace", req("spiffe://cluster.local/ns/other/sa/x", "trial", "/"), audit.OutcomeAllow,
			`{"source":{"spiffeID":"spiffe://cluster.local/ns/other/sa/x"},"destination":{"namespace":"trial","serviceAccount":"cart","port":8080},"protocol":"http","method":"GET","path":"/","host":"cart","verdict":"deny","mode":"audit","enforced":false}`},
		{"broken deny policy", req("spiffe://cluster.local/ns/web/sa/frontend", "broken", "/"), audit.OutcomeDeny,
			`{"source":{"spiffeID":"spiffe://cluster.local/ns/web/sa/frontend"},"destination":{"namespace":"broken","serviceAccount":"cart","port":8080},"protocol":"http","method":"GET","path":"/","host":"cart","verdict":"deny","mode":"enforce","enforced":true,"policy":{"namespace":"broken","name":"bad-deny","rule":"(does not compile)"}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := e.Decide(tc.r)
			ev, ok := audit.AccessEvent(audit.ComponentAgent, tc.r, d)
			if !ok {
				t.Fatal("no event")
			}
			ev.Time, ev.ID = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC), "test"
			if err := ev.Validate(); err != nil {
				t.Fatalf("event does not validate: %v", err)
			}
			got, _ := json.Marshal(ev.Access)
			if ev.Outcome != tc.outcome || string(got) != tc.want || ev.Reason != d.Reason() {
				t.Errorf("outcome %s reason %q\n%s\nwant outcome %s\n%s", ev.Outcome, ev.Reason, got, tc.outcome, tc.want)
			}
		})
	}
	// An anonymous peer, a user known only by issuer, a token in the path:
	// still one valid event, with the token redacted.
	anon := &policy.Request{Destination: policy.Workload{Namespace: "shop", ServiceAccount: "cart"}, Port: 8080, HTTP: true,
		Method: "GET", Path: "/reset/eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.sig/done", Host: "cart",
		User: &policy.User{Issuer: "https://idp"}}
	ev, ok := audit.AccessEvent(audit.ComponentGateway, anon, e.Decide(anon))
	ev.Time, ev.ID = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC), "test"
	if err := ev.Validate(); !ok || err != nil {
		t.Fatalf("anonymous request: %v", err)
	}
	if ev.Access.Path != "/reset/[redacted]/done" {
		t.Errorf("path %q, want the token redacted", ev.Access.Path)
	}
	if _, ok := audit.AccessEvent(audit.ComponentAgent, req("spiffe://cluster.local/ns/web/sa/x", "kube-system", "/"),
		e.Decide(req("spiffe://cluster.local/ns/web/sa/x", "kube-system", "/"))); ok {
		t.Error("an event for a namespace that is not enrolled")
	}
}
