package meshpolicy_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"kzero.dev/kzero/internal/audit"
	"kzero.dev/kzero/internal/meshpolicy"
	"kzero.dev/kzero/internal/policy"
	"kzero.dev/kzero/internal/tunnel"
)

var td = spiffeid.RequireTrustDomainFromString("cluster.local")

const policies = `apiVersion: kzero.dev/v1alpha1
kind: AccessPolicy
metadata: {name: orders-ingress, namespace: shop}
spec:
  selector: {serviceAccounts: [orders]}
  rules:
  - name: web-calls
    from: [{serviceAccounts: [web]}]
    to: [{ports: [8080]}]
`

func compile(t *testing.T, text string) *policy.Engine {
	t.Helper()
	ps, err := policy.Parse([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	e, err := policy.Compile(ps, policy.Options{TrustDomain: td})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestPoliciesDecideEachStreamAndAreAudited(t *testing.T) {
	var p meshpolicy.Policies
	var events []audit.Event
	dest := func() policy.Workload {
		return policy.Workload{Namespace: "shop", ServiceAccount: "orders", Labels: map[string]string{"app": "orders"}}
	}
	authorize := p.Authorizer(dest,
		func(r *policy.Request, d policy.Decision) {
			if ev, ok := audit.AccessEvent(audit.ComponentAgent, r, d); ok {
				events = append(events, ev)
			}
		})
	web := spiffeid.RequireFromSegments(td, "ns", "shop", "sa", "web")
	other := spiffeid.RequireFromSegments(td, "ns", "shop", "sa", "other")
	at := func(port uint16) netip.AddrPort { return netip.AddrPortFrom(netip.MustParseAddr("10.244.2.7"), port) }

	if d := authorize(context.Background(), tunnel.Request{Source: web, Destination: at(8080)}); d.Allow {
		t.Fatalf("without an engine: %+v, want denied", d)
	}
	p.Set(compile(t, policies))
	for _, tc := range []struct {
		src    spiffeid.ID
		port   uint16
		allow  bool
		reason string
	}{
		{web, 8080, true, "allowed by shop/orders-ingress rule web-calls"},
		{web, 8081, false, "no rule matched: default deny"},
		{other, 8080, false, "no rule matched: default deny"},
	} {
		d := authorize(context.Background(), tunnel.Request{Source: tc.src, Destination: at(tc.port)})
		if d.Allow != tc.allow || !strings.Contains(d.Reason, tc.reason) {
			t.Errorf("%s to port %d: %+v, want allow %v because %q", tc.src, tc.port, d, tc.allow, tc.reason)
		}
	}
	if len(events) != 3 {
		t.Fatalf("%d audit events for 3 decisions", len(events))
	}
	if a := events[0].Access; a == nil || a.Policy == nil || a.Policy.Rule != "web-calls" || a.Destination.Port != 8080 || a.Source.SPIFFEID != web {
		t.Errorf("the allowed stream's event: %+v", events[0].Access)
	}
	if events[1].Outcome != audit.OutcomeDeny {
		t.Errorf("the denied stream's event: %+v", events[1])
	}

	// A new engine decides the next stream at once.
	p.Set(compile(t, strings.Replace(policies, "ports: [8080]", "ports: [8081]", 1)))
	if d := authorize(context.Background(), tunnel.Request{Source: web, Destination: at(8081)}); !d.Allow {
		t.Errorf("after the policy change, 8081: %+v", d)
	}
	if d := authorize(context.Background(), tunnel.Request{Source: web, Destination: at(8080)}); d.Allow {
		t.Errorf("after the policy change, 8080: %+v", d)
	}
}
