package audit_test

import (
	"encoding/json"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"kzero.dev/kzero/internal/audit"
)

var exampleTime = time.Date(2026, 7, 1, 12, 0, 0, 120000000, time.UTC)

func exampleEvents() map[string]audit.Event {
	common := func(kind audit.Kind, c audit.Component, o audit.Outcome, reason string) audit.Event {
		return audit.Event{Schema: audit.Schema, Time: exampleTime, ID: "8f14e45fceea167a5a36dedd4bea2543",
			Component: c, Kind: kind, Outcome: o, Reason: reason}
	}
	issuance := common(audit.KindIssuance, audit.ComponentAuthority, audit.OutcomeSuccess, "issued for PodCertificateRequest shop/web-7d4b9c-x2x9z-pcr")
	issuance.Issuance = &audit.Issuance{
		SPIFFEID: spiffeid.RequireFromString("spiffe://cluster.local/ns/shop/sa/web"), Type: audit.SVIDTypeX509,
		Serial: "5f1c0a2e9b7d4c3a8e6f1b2d3c4a5e6f", NotBefore: exampleTime.Add(-30 * time.Second), NotAfter: exampleTime.Add(time.Hour),
		KeyType: "ECDSA-P256", Requester: "pod/shop/web-7d4b9c-x2x9z/0b5e2f7c-6d1a-4e8b-9c3f-2a7d5e1b8c4f", SignerKeyID: "3a9f0c1d2e4b5a6978c8d7e6f5a4b3c2d1e0f9a8",
	}
	admission := common(audit.KindAdmission, audit.ComponentAuthority, audit.OutcomeDeny,
		`pod admission webhook refused the pod: pod shop/debug mounts the node's filesystem (hostPath / as volume "root"): enrolled namespaces refuse hostPath volumes, through which a pod could read other pods' private keys; use an emptyDir, a persistentVolumeClaim, a configMap or a secret volume instead, or run the pod in a namespace that is not enrolled`)
	admission.Admission = &audit.Admission{UID: "705ab4f5-6393-11e8-b7cc-42010a800002", Resource: "v1/pods",
		Namespace: "shop", Name: "debug", Operation: "CREATE", User: "alice@example.com",
		Caller: "kube-apiserver-webhook-client", Address: netip.MustParseAddrPort("10.244.0.1:53022")}
	access := common(audit.KindAccess, audit.ComponentAgent, audit.OutcomeAllow,
		"no rule matched: default deny (namespace in audit mode: allowed)")
	access.Access = &audit.Access{
		Source: audit.Source{SPIFFEID: spiffeid.RequireFromString("spiffe://cluster.local/ns/batch/sa/report"),
			Address: netip.MustParseAddrPort("10.244.1.17:43512")},
		Destination: audit.Destination{SPIFFEID: spiffeid.RequireFromString("spiffe://cluster.local/ns/shop/sa/web"),
			Namespace: "shop", ServiceAccount: "web", Workload: "web-7d4b9c-x2x9z", Port: 8080},
		Protocol: "http", Method: "POST", Path: "/orders", Host: "web.shop.svc",
		Verdict: audit.VerdictDeny, Mode: audit.ModeAudit, Enforced: false,
	}
	gateway := common(audit.KindAccess, audit.ComponentGateway, audit.OutcomeAllow, "allowed by shop/web rule customers")
	gateway.Access = &audit.Access{
		Source:      audit.Source{User: &audit.User{Issuer: "https://login.example.com", Subject: "u-4821"}},
		Destination: audit.Destination{SPIFFEID: spiffeid.RequireFromString("spiffe://cluster.local/ns/shop/sa/web"), Namespace: "shop", Port: 8080},
		Protocol:    "http", Method: "GET", Path: "/cart", Host: "shop.example.com",
		Verdict: audit.VerdictAllow, Mode: audit.ModeEnforce, Enforced: true,
		Policy: &audit.PolicyRef{Namespace: "shop", Name: "web", Rule: "customers"},
	}
	return map[string]audit.Event{"issuance": issuance, "admission": admission, "access": access, "gateway": gateway}
}

// TestEventJSON pins the wire form of each kind: these lines are the
// examples of docs/audit.md.
func TestEventJSON(t *testing.T) {
	want := map[string]string{
		"issuance":  `{"schema":"kzero.dev/audit/v1","time":"2026-07-01T12:00:00.120000000Z","id":"8f14e45fceea167a5a36dedd4bea2543","component":"authority","kind":"issuance","outcome":"success","reason":"issued for PodCertificateRequest shop/web-7d4b9c-x2x9z-pcr","issuance":{"spiffeID":"spiffe://cluster.local/ns/shop/sa/web","type":"x509-svid","serial":"5f1c0a2e9b7d4c3a8e6f1b2d3c4a5e6f","notBefore":"2026-07-01T11:59:30.12Z","notAfter":"2026-07-01T13:00:00.12Z","keyType":"ECDSA-P256","requester":"pod/shop/web-7d4b9c-x2x9z/0b5e2f7c-6d1a-4e8b-9c3f-2a7d5e1b8c4f","signerKeyID":"3a9f0c1d2e4b5a6978c8d7e6f5a4b3c2d1e0f9a8"}}`,
		"admission": `{"schema":"kzero.dev/audit/v1","time":"2026-07-01T12:00:00.120000000Z","id":"8f14e45fceea167a5a36dedd4bea2543","component":"authority","kind":"admission","outcome":"deny","reason":"pod admission webhook refused the pod: pod shop/debug mounts the node's filesystem (hostPath / as volume \"root\"): enrolled namespaces refuse hostPath volumes, through which a pod could read other pods' private keys; use an emptyDir, a persistentVolumeClaim, a configMap or a secret volume instead, or run the pod in a namespace that is not enrolled","admission":{"uid":"705ab4f5-6393-11e8-b7cc-42010a800002","resource":"v1/pods","namespace":"shop","name":"debug","operation":"CREATE","user":"alice@example.com","allowed":false,"patched":false,"caller":"kube-apiserver-webhook-client","address":"10.244.0.1:53022"}}`,
		"access":    `{"schema":"kzero.dev/audit/v1","time":"2026-07-01T12:00:00.120000000Z","id":"8f14e45fceea167a5a36dedd4bea2543","component":"agent","kind":"access","outcome":"allow","reason":"no rule matched: default deny (namespace in audit mode: allowed)","access":{"source":{"spiffeID":"spiffe://cluster.local/ns/batch/sa/report","address":"10.244.1.17:43512"},"destination":{"spiffeID":"spiffe://cluster.local/ns/shop/sa/web","namespace":"shop","serviceAccount":"web","workload":"web-7d4b9c-x2x9z","port":8080},"protocol":"http","method":"POST","path":"/orders","host":"web.shop.svc","verdict":"deny","mode":"audit","enforced":false}}`,
		"gateway":   `{"schema":"kzero.dev/audit/v1","time":"2026-07-01T12:00:00.120000000Z","id":"8f14e45fceea167a5a36dedd4bea2543","component":"gateway","kind":"access","outcome":"allow","reason":"allowed by shop/web rule customers","access":{"source":{"user":{"issuer":"https://login.example.com","subject":"u-4821"}},"destination":{"spiffeID":"spiffe://cluster.local/ns/shop/sa/web","namespace":"shop","port":8080},"protocol":"http","method":"GET","path":"/cart","host":"shop.example.com","verdict":"allow","mode":"enforce","enforced":true,"policy":{"namespace":"shop","name":"web","rule":"customers"}}}`,
	}
	for name, e := range exampleEvents() {
		if err := e.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		got, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want[name] {
			t.Errorf("%s:\n got %s\nwant %s", name, got, want[name])
		}
		var back audit.Event
		if err := json.Unmarshal(got, &back); err != nil || !back.Time.Equal(e.Time) || back.Kind != e.Kind {
			t.Errorf("%s does not read back: %v", name, err)
		}
	}
}

func TestValidate(t *testing.T) {
	ev := exampleEvents()
	tests := []struct {
		name   string
		change func(e *audit.Event)
		from   string
		want   string
	}{
		{"no reason", func(e *audit.Event) { e.Reason = " " }, "access",
			"audit: invalid event: reason: is empty: say why, so that a person can act on it"},
		{"unknown kind", func(e *audit.Event) { e.Kind = "login"; e.Access = nil }, "access",
			`audit: invalid event: kind: "login" is not issuance, admission or access`},
		{"reserved kind", func(e *audit.Event) { e.Kind = audit.KindKubernetes; e.Access = nil }, "access",
			"audit: invalid event: kind: kubernetes is reserved for Kubernetes API audit events and not written yet"},
		{"two payloads", func(e *audit.Event) { e.Admission = ev["admission"].Admission }, "access",
			`audit: invalid event: admission: is set in an event of kind "access"`},
		{"missing payload", func(e *audit.Event) { e.Issuance = nil }, "issuance",
			"audit: invalid event: issuance: is missing"},
		{"bad component and outcome", func(e *audit.Event) { e.Component = "sidecar"; e.Outcome = "allow" }, "issuance",
			`audit: invalid event: component: "sidecar" is not authority, agent, gateway or cli; outcome: "allow" is not success or failure`},
		{"audit mode enforced", func(e *audit.Event) { e.Access.Enforced = true }, "access",
			`audit: invalid event: access.enforced: is true in mode audit; outcome: is "allow" but verdict deny in mode audit has effect deny`},
		{"outcome not the effect", func(e *audit.Event) { e.Outcome = audit.OutcomeDeny }, "access",
			`audit: invalid event: outcome: is "deny" but verdict deny in mode audit has effect allow`},
		{"allow without policy", func(e *audit.Event) { e.Access.Policy = nil }, "gateway",
			"audit: invalid event: access.policy: is missing: an allow names the policy and rule that allowed (or is a passthrough)"},
		{"a passthrough without the address, with a policy", func(e *audit.Event) { e.Access.Passthrough = true }, "gateway",
			"audit: invalid event: access.passthrough: is an allow with the destination's address and no policy"},
		{"query in path", func(e *audit.Event) { e.Access.Path = "/cart?token=abc" }, "gateway",
			"audit: invalid event: access.path: has a query or fragment: leave it out, it may carry secrets"},
		{"token in reason", func(e *audit.Event) {
			e.Reason = "bad token eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.sig"
		}, "gateway", "audit: invalid event: reason: contains what looks like a JWT: never put bearer tokens in an event"},
		{"key in reason", func(e *audit.Event) { e.Reason = "-----BEGIN PRIVATE KEY-----" }, "issuance",
			"audit: invalid event: reason: contains a PEM block: never put key material in an event"},
		{"admission verdict", func(e *audit.Event) { e.Admission.Allowed = true; e.Admission.Operation = "PATCH" }, "admission",
			`audit: invalid event: admission.operation: "PATCH" is not CREATE, UPDATE, DELETE or CONNECT; admission.allowed: is true but the outcome is "deny"`},
		{"admission unread but allowed", func(e *audit.Event) {
			e.Admission = &audit.Admission{Unauthenticated: true, Allowed: true}
		}, "admission",
			`audit: invalid event: admission.uid: is empty; admission.resource: is empty; admission.operation: "" is not CREATE, UPDATE, DELETE or CONNECT; admission.allowed: is true but the outcome is "deny"`},
		{"admission caller of an unauthenticated review", func(e *audit.Event) {
			e.Admission.Caller, e.Admission.Unauthenticated = "kube-apiserver-webhook-client", true
		}, "admission",
			`audit: invalid event: admission.caller: is set, but the event says its sender is not authenticated`},
		{"anonymous access", func(e *audit.Event) { e.Access.Source = audit.Source{}; e.Access.Protocol = "udp" }, "access",
			`audit: invalid event: access.protocol: "udp" is not tcp or http`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := exampleEvents()[tt.from]
			tt.change(&e)
			err := e.Validate()
			if err == nil || err.Error() != tt.want {
				t.Fatalf("error:\n got %v\nwant %s", err, tt.want)
			}
			if !errors.Is(err, audit.ErrInvalidEvent) {
				t.Error("not ErrInvalidEvent")
			}
		})
	}
}

// A review refused because its sender is not authenticated is recorded
// without what it claims: no uid, resource or operation.
func TestValidateUnreadAdmission(t *testing.T) {
	e := exampleEvents()["admission"]
	e.Reason = "refused an AdmissionReview from 10.244.0.7:41234: its sender is not authenticated"
	e.Admission = &audit.Admission{Unauthenticated: true, Address: netip.MustParseAddrPort("10.244.0.7:41234")}
	if err := e.Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestValidatePassthrough: an enrolled pod's connection to a destination
// outside the mesh is an allow that no policy made, with the
// destination's address.
func TestValidatePassthrough(t *testing.T) {
	e := exampleEvents()["gateway"]
	e.Access.Passthrough, e.Access.Policy = true, nil
	e.Access.Destination = audit.Destination{Address: netip.MustParseAddrPort("192.0.2.7:443"), Port: 443}
	if err := e.Validate(); err != nil {
		t.Fatal(err)
	}
}
