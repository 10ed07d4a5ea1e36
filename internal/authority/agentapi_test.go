package authority_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"kzero.dev/kzero/internal/agentapi"
	"kzero.dev/kzero/internal/audit"
	"kzero.dev/kzero/internal/authority"
	"kzero.dev/kzero/internal/ca"
	"kzero.dev/kzero/internal/ca/catest"
)

const (
	agentNS   = "kzero-system"
	agentUser = "system:serviceaccount:kzero-system:kzero-agent"
)

// tokenTable stands in for kube-apiserver's TokenReview: it knows each
// token's audiences and user, and answers as kube-apiserver does (not
// authenticated, with an error, for an unknown token or one of other
// audiences; else the user and the audiences in common). The real
// TokenReview, with real projected tokens, runs in the end-to-end test of
// the agent on the test cluster.
type tokenTable map[string]tokenEntry

type tokenEntry struct {
	audiences []string
	user      authnv1.UserInfo
}

func (tt tokenTable) Create(_ context.Context, r *authnv1.TokenReview, _ metav1.CreateOptions) (*authnv1.TokenReview, error) {
	out := r.DeepCopy()
	e, ok := tt[r.Spec.Token]
	if !ok {
		out.Status.Error = "[invalid bearer token, square/go-jose: error in cryptographic primitive]"
		return out, nil
	}
	var common []string
	for _, a := range r.Spec.Audiences {
		if slices.Contains(e.audiences, a) {
			common = append(common, a)
		}
	}
	if len(common) == 0 {
		out.Status.Error = fmt.Sprintf("[invalid bearer token, token audiences %q is invalid for the target audiences %q]", e.audiences, r.Spec.Audiences)
		return out, nil
	}
	out.Status = authnv1.TokenReviewStatus{Authenticated: true, User: e.user, Audiences: common}
	return out, nil
}

// podToken is the entry of a token bound to a pod on a node.
func podToken(user, pod, uid, node string, audiences ...string) tokenEntry {
	extra := map[string]authnv1.ExtraValue{}
	if pod != "" {
		extra["authentication.kubernetes.io/pod-name"] = authnv1.ExtraValue{pod}
		extra["authentication.kubernetes.io/pod-uid"] = authnv1.ExtraValue{uid}
	}
	if node != "" {
		extra["authentication.kubernetes.io/node-name"] = authnv1.ExtraValue{node}
	}
	if len(audiences) == 0 {
		audiences = []string{agentapi.TokenAudience}
	}
	return tokenEntry{audiences: audiences, user: authnv1.UserInfo{Username: user, Extra: extra}}
}

// memCluster holds pods and namespaces in memory, as the API server or an
// informer's cache would, and counts reads.
type memCluster struct {
	mu         sync.Mutex
	namespaces map[string]*corev1.Namespace
	pods       []*corev1.Pod
	reads      int
}

func (m *memCluster) Namespace(_ context.Context, name string) (*corev1.Namespace, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reads++
	return m.namespaces[name], nil
}

func (m *memCluster) Pod(_ context.Context, namespace, name string) (*corev1.Pod, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reads++
	for _, p := range m.pods {
		if p.Namespace == namespace && p.Name == name {
			return p, nil
		}
	}
	return nil, nil
}

func (m *memCluster) PodsOnNode(_ context.Context, namespace, node string) ([]*corev1.Pod, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reads++
	var out []*corev1.Pod
	for _, p := range m.pods {
		if p.Namespace == namespace && p.Spec.NodeName == node {
			out = append(out, p)
		}
	}
	return out, nil
}

func (m *memCluster) readCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.reads
}

// memAudit keeps the events recorded, each first written by a real
// Recorder, so that an event the schema refuses fails the test.
type memAudit struct {
	t      *testing.T
	rec    *audit.Recorder
	mu     sync.Mutex
	events []audit.Event
}

func newMemAudit(t *testing.T) *memAudit {
	rec, err := audit.NewRecorder(audit.Config{Component: audit.ComponentAuthority, Out: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	return &memAudit{t: t, rec: rec}
}

func (m *memAudit) Record(e audit.Event) error {
	if err := m.rec.Record(e); err != nil {
		m.t.Errorf("audit event refused: %v", err)
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.events = append(m.events, e)
	return nil
}

// take returns the events recorded since the last take.
func (m *memAudit) take() []audit.Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := m.events
	m.events = nil
	return out
}

func namespace(name string, enrolled bool) *corev1.Namespace {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}}}
	if enrolled {
		ns.Labels[authority.EnrolledLabel] = "true"
	}
	return ns
}

func pod(ns, name, uid, node, sa string, mod ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(uid)},
		Spec:       corev1.PodSpec{NodeName: node, ServiceAccountName: sa},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
	for _, m := range mod {
		m(p)
	}
	return p
}

func ownedBy(kind, apiVersion, name string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: apiVersion, Kind: kind, Name: name, UID: "owner-uid", Controller: new(true)}}
	}
}

var (
	ofDaemonSet = ownedBy("DaemonSet", "apps/v1", "kzero-agent")
	terminating = func(p *corev1.Pod) { p.DeletionTimestamp = &metav1.Time{Time: time.Now()} }
	succeeded   = func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }
	apiID       = spiffeid.RequireFromString("spiffe://cluster.local/ns/kzero-system/sa/kzero-authority")
)

// agentEnv is an agent API on loopback with a real CA, the tokens, pods
// and namespaces of a two-node cluster, and the audit events it records.
type agentEnv struct {
	t     *testing.T
	ca    *ca.CA
	clk   *catest.Clock
	url   string
	audit *memAudit
	live  *memCluster
	cache *memCluster
}

func newAgentEnv(t *testing.T, mod ...func(*authority.AgentAPIConfig)) *agentEnv {
	t.Helper()
	clk := catest.NewClock(time.Now())
	e := &agentEnv{t: t, ca: newCA(t, td, clk.Now), clk: clk, audit: newMemAudit(t)}
	agents := []*corev1.Pod{
		pod(agentNS, "kzero-agent-a", "uid-agent-a", "node-a", "kzero-agent", ofDaemonSet),
		pod(agentNS, "kzero-agent-b", "uid-agent-b", "node-b", "kzero-agent", ofDaemonSet),
		pod(agentNS, "rogue", "uid-rogue", "node-a", "kzero-agent", ownedBy("ReplicaSet", "apps/v1", "rogue-5d8f")),
		pod(agentNS, "bare", "uid-bare", "node-a", "kzero-agent"),
		pod(agentNS, "kzero-agent-old", "uid-old", "node-a", "kzero-agent", ofDaemonSet, terminating),
		pod(agentNS, "kzero-agent-done", "uid-done", "node-a", "kzero-agent", ofDaemonSet, succeeded),
		pod(agentNS, "kzero-agent-c", "uid-agent-c", "node-c", "kzero-agent", ofDaemonSet),
	}
	workloads := []*corev1.Pod{
		pod("shop", "web-1", "uid-web-1", "node-a", "web"),
		pod("shop", "db-1", "uid-db-1", "node-b", "db"),
		pod("shop", "job-1", "uid-job-1", "node-a", "batch", succeeded),
		pod("shop", "cache-1", "uid-cache-1", "node-a", "cache", terminating),
		pod("plain", "app-1", "uid-app-1", "node-a", "app"),
		pod("kube-system", "coredns-1", "uid-coredns-1", "node-a", "coredns"),
	}
	// kzero's namespace and kube-system are labeled enrolled: their pods
	// get no identity all the same.
	namespaces := map[string]*corev1.Namespace{
		agentNS: namespace(agentNS, true), "shop": namespace("shop", true), "plain": namespace("plain", false),
		"kube-system": namespace("kube-system", true),
	}
	// The API server has what the cache has, and what it has not seen
	// yet: a pod started a moment ago and a namespace just enrolled.
	e.cache = &memCluster{namespaces: namespaces, pods: slices.Concat(agents, workloads)}
	e.live = &memCluster{
		namespaces: map[string]*corev1.Namespace{
			agentNS: namespace(agentNS, true), "shop": namespace("shop", true), "plain": namespace("plain", false),
			"kube-system": namespace("kube-system", true), "new": namespace("new", true),
		},
		pods: slices.Concat(agents, workloads, []*corev1.Pod{
			pod("shop", "fresh-1", "uid-fresh-1", "node-a", "fresh"),
			pod("new", "svc-1", "uid-svc-1", "node-a", "svc"),
		}),
	}
	tokens := tokenTable{
		"token-a":          podToken(agentUser, "kzero-agent-a", "uid-agent-a", "node-a"),
		"token-b":          podToken(agentUser, "kzero-agent-b", "uid-agent-b", "node-b"),
		"token-api":        podToken(agentUser, "kzero-agent-a", "uid-agent-a", "node-a", "https://kubernetes.default.svc.cluster.local"),
		"token-default":    podToken("system:serviceaccount:kzero-system:default", "web-1", "uid-web-1", "node-a"),
		"token-unbound":    podToken(agentUser, "", "", ""),
		"token-no-node":    podToken(agentUser, "kzero-agent-a", "uid-agent-a", ""),
		"token-earlier":    podToken(agentUser, "kzero-agent-a", "uid-earlier", "node-a"),
		"token-gone":       podToken(agentUser, "kzero-agent-x", "uid-x", "node-a"),
		"token-rogue":      podToken(agentUser, "rogue", "uid-rogue", "node-a"),
		"token-bare":       podToken(agentUser, "bare", "uid-bare", "node-a"),
		"token-elsewhere":  podToken(agentUser, "kzero-agent-c", "uid-agent-c", "node-a"),
		"token-old":        podToken(agentUser, "kzero-agent-old", "uid-old", "node-a"),
		"token-done":       podToken(agentUser, "kzero-agent-done", "uid-done", "node-a"),
		"token-other-user": podToken("system:serviceaccount:shop:web", "web-1", "uid-web-1", "node-a"),
	}
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := authority.AgentAPIConfig{
		Listener: ln, TrustDomain: td, Namespace: agentNS,
		CA:     func() authority.AgentCA { return e.ca },
		Tokens: tokens, Cluster: e.live, Cache: e.cache,
		Audit: e.audit, Log: slog.New(slog.DiscardHandler), Now: clk.Now,
		// The tests' clock stands still, so no bucket refills: room for
		// every call of a test, but TestAgentAPIRateLimits.
		AttestBurst: 1000, SignBurst: 1000,
	}
	for _, m := range mod {
		m(&cfg)
	}
	api, err := authority.NewAgentAPI(cfg)
	if err != nil {
		t.Fatal(err)
	}
	runUntilCleanup(t, api.Run)
	e.url = "https://" + ln.Addr().String()
	return e
}

// client is an agent's HTTPS client: it authenticates the authority by
// its SPIFFE ID, and presents svid when there is one.
func (e *agentEnv) client(svid *x509svid.SVID) *http.Client {
	tc := tlsconfig.TLSClientConfig(e.ca.Bundle(), tlsconfig.AuthorizeID(apiID))
	if svid != nil {
		tc = tlsconfig.MTLSClientConfig(svid, e.ca.Bundle(), tlsconfig.AuthorizeID(apiID))
	}
	tr := &http.Transport{TLSClientConfig: tc}
	e.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// call makes a request with body (nil: none; []byte: as is; else JSON)
// and returns the status and the body.
func (e *agentEnv) call(client *http.Client, method, path string, body any) (int, []byte) {
	e.t.Helper()
	var r io.Reader = http.NoBody
	switch b := body.(type) {
	case nil:
	case []byte:
		r = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(e.t.Context(), method, e.url+path, r)
	if err != nil {
		e.t.Fatal(err)
	}
	res, err := client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	out, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return res.StatusCode, out
}

// errorOf returns the message of an agentapi.Error body.
func errorOf(t *testing.T, body []byte) string {
	t.Helper()
	var ae agentapi.Error
	if err := json.Unmarshal(body, &ae); err != nil {
		t.Fatalf("body %q is not an agentapi.Error: %v", body, err)
	}
	return ae.Error
}

// newKey makes a key and a CSR for it, naming uri when not empty.
func newKey(t *testing.T, uri string) (crypto.Signer, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.CertificateRequest{}
	if uri != "" {
		u, err := url.Parse(uri)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = []*url.URL{u}
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return key, csr
}

// svidOf parses a chain with its key into an SVID, verified against the
// CA's bundle.
func (e *agentEnv) svidOf(chain [][]byte, key crypto.Signer) *x509svid.SVID {
	e.t.Helper()
	id, _, err := x509svid.ParseAndVerify(chain, e.ca.Bundle())
	if err != nil {
		e.t.Fatalf("the chain does not verify as an X.509-SVID: %v", err)
	}
	var certs []*x509.Certificate
	for _, der := range chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			e.t.Fatal(err)
		}
		certs = append(certs, c)
	}
	return &x509svid.SVID{ID: id, Certificates: certs, PrivateKey: key}
}

// attest attests with token and returns the agent's SVID.
func (e *agentEnv) attest(token string) *x509svid.SVID {
	e.t.Helper()
	key, csr := newKey(e.t, "")
	status, body := e.call(e.client(nil), http.MethodPost, agentapi.AttestPath, agentapi.AttestRequest{Token: token, CSR: csr})
	if status != http.StatusOK {
		e.t.Fatalf("attest: %d %s", status, body)
	}
	var res agentapi.AttestResponse
	if err := json.Unmarshal(body, &res); err != nil {
		e.t.Fatal(err)
	}
	return e.svidOf(res.Chain, key)
}

// wantEvent checks that exactly one event was recorded, and what it says.
func (e *agentEnv) wantEvent(outcome audit.Outcome, typ, id, requester, reason string) audit.Event {
	e.t.Helper()
	events := e.audit.take()
	if len(events) != 1 {
		e.t.Fatalf("%d audit events, want 1: %+v", len(events), events)
	}
	ev := events[0]
	if ev.Kind != audit.KindIssuance || ev.Outcome != outcome || ev.Reason != reason {
		e.t.Errorf("audit event %s %s %q\nwant       issuance %s %q", ev.Kind, ev.Outcome, ev.Reason, outcome, reason)
	}
	if p := ev.Issuance; p == nil || p.Type != typ || p.SPIFFEID.String() != id || p.Requester != requester {
		e.t.Errorf("issuance %+v, want type %s, spiffeID %s, requester %s", p, typ, id, requester)
	} else if !p.Address.Addr().IsLoopback() {
		e.t.Errorf("issuance address %s, want the caller's, on loopback", p.Address)
	}
	return ev
}

// TestAgentAttest: the agent DaemonSet's pod on node-a, with its projected
// token of audience kzero, gets spiffe://cluster.local/kzero/agent/node-a
// for an hour, and the issuance is audited.
func TestAgentAttest(t *testing.T) {
	e := newAgentEnv(t)
	svid := e.attest("token-a")
	want := spiffeid.RequireFromString("spiffe://cluster.local/kzero/agent/node-a")
	raw := [][]byte{}
	for _, c := range svid.Certificates {
		raw = append(raw, c.Raw)
	}
	id, chains, err := x509svid.ParseAndVerify(raw, e.ca.Bundle())
	if err != nil || id != want || len(chains) == 0 {
		t.Fatalf("the agent's chain: %v, %v; want an X.509-SVID for %s", id, err, want)
	}
	leaf := svid.Certificates[0]
	if got := leaf.NotAfter.Sub(leaf.NotBefore); got != authority.DefaultAgentSVIDTTL+ca.DefaultBackdate {
		t.Errorf("lifetime %s, want %s (and the CA's backdate)", got, authority.DefaultAgentSVIDTTL)
	}
	ev := e.wantEvent(audit.OutcomeSuccess, audit.SVIDTypeX509, want.String(), "node/node-a",
		"issued the X.509-SVID of the agent of node node-a on attestation: pod kzero-system/kzero-agent-a (UID uid-agent-a) of DaemonSet kzero-system/kzero-agent, service account kzero-agent")
	if p := ev.Issuance; p.Serial != leaf.SerialNumber.Text(16) || !p.NotAfter.Equal(leaf.NotAfter) || p.KeyType != "ECDSA-P256" || p.SignerKeyID == "" {
		t.Errorf("issuance %+v does not describe the leaf (serial %x, notAfter %s)", p, leaf.SerialNumber, leaf.NotAfter)
	}
	// Forensics: where the token came from, and the pod it is bound to,
	// tell a replayed token from the real agent.
	if p := ev.Issuance; !p.Address.Addr().IsLoopback() || p.Address.Port() == 0 || p.PodUID != "uid-agent-a" {
		t.Errorf("issuance address %s, pod UID %q; want the caller's loopback ip:port and uid-agent-a", p.Address, p.PodUID)
	}
}

// TestAgentAttestRefused: every token or pod that is not the agent
// DaemonSet's pod on the node the token names is refused, with a message
// saying what is wrong, and audited.
func TestAgentAttestRefused(t *testing.T) {
	e := newAgentEnv(t)
	_, csr := newKey(t, "")
	const agentA = "spiffe://cluster.local/kzero/agent/node-a"
	for _, tc := range []struct {
		name      string
		token     string
		status    int
		msg       string
		id        string
		requester string
	}{
		{name: "unknown token", token: "forged", status: http.StatusUnauthorized,
			msg: "the token does not authenticate for audience kzero ([invalid bearer token, square/go-jose: error in cryptographic primitive]): attest with the agent pod's projected service account token of audience kzero, and a fresh one when it expires",
			id:  "spiffe://cluster.local", requester: "address/"},
		{name: "wrong audience", token: "token-api", status: http.StatusUnauthorized,
			msg: `the token does not authenticate for audience kzero ([invalid bearer token, token audiences ["https://kubernetes.default.svc.cluster.local"] is invalid for the target audiences ["kzero"]]): attest with the agent pod's projected service account token of audience kzero, and a fresh one when it expires`,
			id:  "spiffe://cluster.local", requester: "address/"},
		{name: "no token", token: "", status: http.StatusUnauthorized,
			msg: "the request has no token: attest with the agent pod's projected service account token of audience kzero",
			id:  "spiffe://cluster.local", requester: "address/"},
		{name: "wrong service account", token: "token-default", status: http.StatusForbidden,
			msg: "the token is of system:serviceaccount:kzero-system:default, not of the agents' service account system:serviceaccount:kzero-system:kzero-agent: only the pods of the kzero agent DaemonSet attest",
			id:  agentA, requester: "user/system:serviceaccount:kzero-system:default"},
		{name: "a workload's token", token: "token-other-user", status: http.StatusForbidden,
			msg: "the token is of system:serviceaccount:shop:web, not of the agents' service account system:serviceaccount:kzero-system:kzero-agent: only the pods of the kzero agent DaemonSet attest",
			id:  agentA, requester: "user/system:serviceaccount:shop:web"},
		{name: "token bound to no pod", token: "token-unbound", status: http.StatusForbidden,
			msg: "the token of system:serviceaccount:kzero-system:kzero-agent is bound to no pod (its user extra has no authentication.kubernetes.io/pod-name and authentication.kubernetes.io/pod-uid): attest with the projected token mounted in the agent's pod, not one made for the service account alone",
			id:  "spiffe://cluster.local", requester: "user/" + agentUser},
		{name: "token naming no node", token: "token-no-node", status: http.StatusForbidden,
			msg: "the token of pod kzero-agent-a names no node (its user extra has no authentication.kubernetes.io/node-name): attest with a token projected into the scheduled agent pod, by a kube-apiserver that records the node in it",
			id:  "spiffe://cluster.local", requester: "user/" + agentUser},
		{name: "pod UID mismatch", token: "token-earlier", status: http.StatusForbidden,
			msg: "pod kzero-system/kzero-agent-a has UID uid-agent-a, but the token names UID uid-earlier: the token is of an earlier pod of that name; attest with the current pod's token",
			id:  agentA, requester: "node/node-a"},
		{name: "pod gone", token: "token-gone", status: http.StatusForbidden,
			msg: "pod kzero-system/kzero-agent-x, which the token is bound to, does not exist: a new agent pod attests with its own token",
			id:  agentA, requester: "node/node-a"},
		{name: "pod of a ReplicaSet", token: "token-rogue", status: http.StatusForbidden,
			msg: "pod kzero-system/rogue is not a pod of DaemonSet kzero-system/kzero-agent (it has controller ReplicaSet rogue-5d8f): only the kzero agent DaemonSet's pods attest",
			id:  agentA, requester: "node/node-a"},
		{name: "pod of no controller", token: "token-bare", status: http.StatusForbidden,
			msg: "pod kzero-system/bare is not a pod of DaemonSet kzero-system/kzero-agent (it has no controller): only the kzero agent DaemonSet's pods attest",
			id:  agentA, requester: "node/node-a"},
		{name: "pod on another node", token: "token-elsewhere", status: http.StatusForbidden,
			msg: `pod kzero-system/kzero-agent-c is bound to node "node-c", but the token names node node-a: an agent attests only for the node its pod runs on`,
			id:  agentA, requester: "node/node-a"},
		{name: "terminating pod", token: "token-old", status: http.StatusForbidden,
			msg: "pod kzero-system/kzero-agent-old is terminating: the DaemonSet's next pod on node node-a attests",
			id:  agentA, requester: "node/node-a"},
		{name: "finished pod", token: "token-done", status: http.StatusForbidden,
			msg: "pod kzero-system/kzero-agent-done has finished (Succeeded): the DaemonSet's next pod on node node-a attests",
			id:  agentA, requester: "node/node-a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := e.call(e.client(nil), http.MethodPost, agentapi.AttestPath, agentapi.AttestRequest{Token: tc.token, CSR: csr})
			if got := errorOf(t, body); status != tc.status || got != tc.msg {
				t.Errorf("%d %q\nwant %d %q", status, got, tc.status, tc.msg)
			}
			ev := e.audit.take()
			if len(ev) != 1 {
				t.Fatalf("%d audit events, want 1", len(ev))
			}
			p := ev[0].Issuance
			if ev[0].Outcome != audit.OutcomeFailure || ev[0].Reason != "refused attestation: "+tc.msg {
				t.Errorf("audit %s %q, want failure %q", ev[0].Outcome, ev[0].Reason, "refused attestation: "+tc.msg)
			}
			if p.SPIFFEID.String() != tc.id || !strings.HasPrefix(p.Requester, tc.requester) || p.Type != audit.SVIDTypeX509 || p.KeyType != "ECDSA-P256" {
				t.Errorf("issuance %+v, want spiffeID %s, requester %s…, x509-svid, ECDSA-P256", p, tc.id, tc.requester)
			}
			if tc.requester == "address/" && p.Requester == "address/" {
				t.Error("the requester names no address")
			}
		})
	}
}

// TestAgentAttestBadRequest: a body that is not exactly an AttestRequest,
// or a CSR the CA refuses, gets 400 and is audited.
func TestAgentAttestBadRequest(t *testing.T) {
	e := newAgentEnv(t)
	_, withSAN := newKey(t, "spiffe://cluster.local/ns/shop/sa/web")
	for _, tc := range []struct {
		name   string
		body   any
		status int
		msg    string
	}{
		{"unknown field", []byte(`{"token":"token-a","csr":"","node":"node-b"}`), http.StatusBadRequest,
			`the body is not a JSON agentapi.AttestRequest (json: unknown field "node"): send exactly its fields`},
		{"not JSON", []byte(`token=token-a`), http.StatusBadRequest,
			"the body is not a JSON agentapi.AttestRequest (invalid character 'o' in literal true (expecting 'r')): send exactly its fields"},
		{"two objects", []byte(`{"token":"token-a"} {}`), http.StatusBadRequest,
			"the body has more than one JSON value: send one agentapi.AttestRequest"},
		{"too large", []byte(`{"token":"` + strings.Repeat("x", 65<<10) + `"}`), http.StatusRequestEntityTooLarge,
			"the body is over 64 KiB: send one agentapi.AttestRequest"},
		{"CSR naming another ID", agentapi.AttestRequest{Token: "token-a", CSR: withSAN}, http.StatusBadRequest,
			"the CA refused the request: ca: the CSR names spiffe://cluster.local/ns/shop/sa/web but the request is for spiffe://cluster.local/kzero/agent/node-a: name spiffe://cluster.local/kzero/agent/node-a or no SAN at all"},
		{"no CSR", agentapi.AttestRequest{Token: "token-a"}, http.StatusBadRequest,
			"the CA refused the request: ca: the request has no CSR: send a PKCS#10 request signed with the key to certify, or the public key with a proof of possession"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := e.call(e.client(nil), http.MethodPost, agentapi.AttestPath, tc.body)
			if got := errorOf(t, body); status != tc.status || got != tc.msg {
				t.Errorf("%d %q\nwant %d %q", status, got, tc.status, tc.msg)
			}
			ev := e.audit.take()
			if len(ev) != 1 || ev[0].Outcome != audit.OutcomeFailure || ev[0].Reason != "refused attestation: "+tc.msg {
				t.Errorf("audit events %+v, want one failure %q", ev, "refused attestation: "+tc.msg)
			}
		})
	}
}

// TestAgentX509SVID: with node-a's SVID, the agent gets the X.509-SVID of
// a service account a running pod of node-a runs as; for one that runs
// only on node-b, or anything else not of its node, it is refused (403)
// and the refusal audited.
func TestAgentX509SVID(t *testing.T) {
	e := newAgentEnv(t)
	client := e.client(e.attest("token-a"))
	e.audit.take()
	for _, tc := range []struct {
		name      string
		id        string
		status    int
		msg       string // empty: issued
		reason    string
		liveReads bool
	}{
		{name: "pod of the node", id: "spiffe://cluster.local/ns/shop/sa/web",
			reason: "issued X.509-SVID to the agent of node node-a: pod shop/web-1 runs there as service account web"},
		{name: "pod the cache has not seen yet", id: "spiffe://cluster.local/ns/shop/sa/fresh", liveReads: true,
			reason: "issued X.509-SVID to the agent of node node-a: pod shop/fresh-1 runs there as service account fresh"},
		{name: "namespace enrolled a moment ago", id: "spiffe://cluster.local/ns/new/sa/svc", liveReads: true,
			reason: "issued X.509-SVID to the agent of node node-a: pod new/svc-1 runs there as service account svc"},
		{name: "pod of another node", id: "spiffe://cluster.local/ns/shop/sa/db", status: http.StatusForbidden, liveReads: true,
			msg: "the agent of node node-a asked for spiffe://cluster.local/ns/shop/sa/db, which runs on no pod of node node-a: an agent gets only the identities of its own node's running pods"},
		{name: "finished pod", id: "spiffe://cluster.local/ns/shop/sa/batch", status: http.StatusForbidden, liveReads: true,
			msg: "the agent of node node-a asked for spiffe://cluster.local/ns/shop/sa/batch, which runs on no pod of node node-a: an agent gets only the identities of its own node's running pods"},
		{name: "terminating pod", id: "spiffe://cluster.local/ns/shop/sa/cache", status: http.StatusForbidden, liveReads: true,
			msg: "the agent of node node-a asked for spiffe://cluster.local/ns/shop/sa/cache, which runs on no pod of node node-a: an agent gets only the identities of its own node's running pods"},
		{name: "namespace not enrolled", id: "spiffe://cluster.local/ns/plain/sa/app", status: http.StatusForbidden, liveReads: true,
			msg: "the agent of node node-a asked for spiffe://cluster.local/ns/plain/sa/app, but namespace plain is not enrolled in kzero: label it kzero.dev/enrolled=true to give its pods identities"},
		{name: "no such namespace", id: "spiffe://cluster.local/ns/gone/sa/app", status: http.StatusForbidden, liveReads: true,
			msg: "the agent of node node-a asked for spiffe://cluster.local/ns/gone/sa/app, but namespace gone does not exist"},
		{name: "another agent's ID", id: "spiffe://cluster.local/kzero/agent/node-b", status: http.StatusForbidden,
			msg: "the agent of node node-a asked for spiffe://cluster.local/kzero/agent/node-b, which is not a workload's SPIFFE ID: agents get only spiffe://cluster.local/ns/<namespace>/sa/<service-account>, for the pods of their node"},
		{name: "the authority's ID", id: "spiffe://cluster.local/ns/kzero-system/sa/kzero-authority", status: http.StatusForbidden,
			msg: "the agent of node node-a asked for spiffe://cluster.local/ns/kzero-system/sa/kzero-authority, but namespace kzero-system is kzero's own namespace: its pods never get a workload identity from kzero, whatever its labels"},
		{name: "a service account of kzero's namespace that pods of the node run as", id: "spiffe://cluster.local/ns/kzero-system/sa/kzero-agent", status: http.StatusForbidden,
			msg: "the agent of node node-a asked for spiffe://cluster.local/ns/kzero-system/sa/kzero-agent, but namespace kzero-system is kzero's own namespace: its pods never get a workload identity from kzero, whatever its labels"},
		{name: "kube-system, labeled enrolled", id: "spiffe://cluster.local/ns/kube-system/sa/coredns", status: http.StatusForbidden,
			msg: "the agent of node node-a asked for spiffe://cluster.local/ns/kube-system/sa/coredns, but namespace kube-system is Kubernetes' own namespace: its pods never get a workload identity from kzero, whatever its labels"},
		{name: "another trust domain", id: "spiffe://example.org/ns/shop/sa/web", status: http.StatusForbidden,
			msg: "the agent of node node-a asked for spiffe://example.org/ns/shop/sa/web, outside trust domain cluster.local: agents get only spiffe://cluster.local/ns/<namespace>/sa/<service-account>"},
		{name: "not a SPIFFE ID", id: "shop/web", status: http.StatusBadRequest,
			msg: `the ID asked for, "shop/web", is not a SPIFFE ID (scheme is missing or invalid): ask for spiffe://cluster.local/ns/<namespace>/sa/<service-account>`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key, csr := newKey(t, "")
			before := e.live.readCount()
			status, body := e.call(client, http.MethodPost, agentapi.X509SVIDPath, agentapi.X509SVIDRequest{ID: tc.id, CSR: csr})
			if read := e.live.readCount() > before; read != tc.liveReads {
				t.Errorf("read the API server: %t, want %t", read, tc.liveReads)
			}
			requester := "node/node-a"
			if tc.msg != "" {
				if got := errorOf(t, body); status != tc.status || got != tc.msg {
					t.Errorf("%d %q\nwant %d %q", status, got, tc.status, tc.msg)
				}
				id := tc.id
				if tc.status == http.StatusBadRequest {
					id = "spiffe://cluster.local"
				}
				e.wantEvent(audit.OutcomeFailure, audit.SVIDTypeX509, id, requester, "refused X.509-SVID: "+tc.msg)
				return
			}
			if status != http.StatusOK {
				t.Fatalf("%d %s", status, body)
			}
			var res agentapi.X509SVIDResponse
			if err := json.Unmarshal(body, &res); err != nil {
				t.Fatal(err)
			}
			s := e.svidOf(res.Chain, key)
			if s.ID.String() != tc.id {
				t.Errorf("SVID for %s, want %s", s.ID, tc.id)
			}
			leaf := s.Certificates[0]
			if got := leaf.NotAfter.Sub(leaf.NotBefore); got != authority.DefaultWorkloadSVIDTTL+ca.DefaultBackdate {
				t.Errorf("lifetime %s, want %s (and the CA's backdate)", got, authority.DefaultWorkloadSVIDTTL)
			}
			ev := e.wantEvent(audit.OutcomeSuccess, audit.SVIDTypeX509, tc.id, requester, tc.reason)
			if ev.Issuance.Serial != leaf.SerialNumber.Text(16) {
				t.Errorf("audited serial %s, want %x", ev.Issuance.Serial, leaf.SerialNumber)
			}
		})
	}
}

// TestAgentOfOtherNode: the agent of node-b gets node-b's workloads and
// none of node-a's.
func TestAgentOfOtherNode(t *testing.T) {
	e := newAgentEnv(t)
	client := e.client(e.attest("token-b"))
	e.audit.take()
	_, csr := newKey(t, "")
	if status, body := e.call(client, http.MethodPost, agentapi.X509SVIDPath, agentapi.X509SVIDRequest{ID: "spiffe://cluster.local/ns/shop/sa/db", CSR: csr}); status != http.StatusOK {
		t.Fatalf("db on node-b: %d %s", status, body)
	}
	e.audit.take()
	status, body := e.call(client, http.MethodPost, agentapi.X509SVIDPath, agentapi.X509SVIDRequest{ID: "spiffe://cluster.local/ns/shop/sa/web", CSR: csr})
	const msg = "the agent of node node-b asked for spiffe://cluster.local/ns/shop/sa/web, which runs on no pod of node node-b: an agent gets only the identities of its own node's running pods"
	if got := errorOf(t, body); status != http.StatusForbidden || got != msg {
		t.Errorf("%d %q\nwant 403 %q", status, got, msg)
	}
	e.wantEvent(audit.OutcomeFailure, audit.SVIDTypeX509, "spiffe://cluster.local/ns/shop/sa/web", "node/node-b", "refused X.509-SVID: "+msg)
}

// TestAgentJWTSVID: a JWT-SVID for a workload of the agent's node
// validates against the bundle; one for another node's, or with no
// audience, is refused and audited.
func TestAgentJWTSVID(t *testing.T) {
	e := newAgentEnv(t)
	client := e.client(e.attest("token-a"))
	e.audit.take()

	status, body := e.call(client, http.MethodPost, agentapi.JWTSVIDPath, agentapi.JWTSVIDRequest{ID: "spiffe://cluster.local/ns/shop/sa/web", Audience: []string{"shop-db", "billing"}})
	if status != http.StatusOK {
		t.Fatalf("%d %s", status, body)
	}
	var res agentapi.JWTSVIDResponse
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatal(err)
	}
	s, err := jwtsvid.ParseAndValidate(res.Token, e.ca.Bundle(), []string{"shop-db"})
	if err != nil {
		t.Fatalf("the JWT-SVID does not validate against the bundle: %v", err)
	}
	if s.ID.String() != "spiffe://cluster.local/ns/shop/sa/web" || !s.Expiry.Equal(res.Expiry) {
		t.Errorf("JWT-SVID for %s expiring %s; want ns/shop/sa/web, expiring %s", s.ID, s.Expiry, res.Expiry)
	}
	ev := e.wantEvent(audit.OutcomeSuccess, audit.SVIDTypeJWT, "spiffe://cluster.local/ns/shop/sa/web", "node/node-a",
		"issued JWT-SVID to the agent of node node-a: pod shop/web-1 runs there as service account web")
	if p := ev.Issuance; !slices.Equal(p.Audience, []string{"shop-db", "billing"}) || !p.NotAfter.Equal(res.Expiry) || p.SignerKeyID == "" {
		t.Errorf("issuance %+v does not describe the token", p)
	}

	for _, tc := range []struct {
		name   string
		req    agentapi.JWTSVIDRequest
		status int
		msg    string
	}{
		{"pod of another node", agentapi.JWTSVIDRequest{ID: "spiffe://cluster.local/ns/shop/sa/db", Audience: []string{"x"}}, http.StatusForbidden,
			"the agent of node node-a asked for spiffe://cluster.local/ns/shop/sa/db, which runs on no pod of node node-a: an agent gets only the identities of its own node's running pods"},
		{"no audience", agentapi.JWTSVIDRequest{ID: "spiffe://cluster.local/ns/shop/sa/web"}, http.StatusBadRequest,
			"the CA refused the request: ca: a JWT-SVID needs at least one non-empty audience: name the service that will accept it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := e.call(client, http.MethodPost, agentapi.JWTSVIDPath, tc.req)
			if got := errorOf(t, body); status != tc.status || got != tc.msg {
				t.Errorf("%d %q\nwant %d %q", status, got, tc.status, tc.msg)
			}
			e.wantEvent(audit.OutcomeFailure, audit.SVIDTypeJWT, tc.req.ID, "node/node-a", "refused JWT-SVID: "+tc.msg)
		})
	}
}

// TestAgentBundle: an agent gets the CA's bundle, as the CA marshals it.
func TestAgentBundle(t *testing.T) {
	e := newAgentEnv(t)
	status, body := e.call(e.client(e.attest("token-a")), http.MethodGet, agentapi.BundlePath, nil)
	want, err := e.ca.Bundle().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if status != http.StatusOK || !bytes.Equal(body, want) {
		t.Errorf("%d %s\nwant 200 %s", status, body, want)
	}
}

// TestAgentUnauthenticated: the calls after attestation need an agent's
// X.509-SVID; without one, or with a workload's, they get 401 (the SVID
// calls audited); a certificate the bundle does not verify fails the
// handshake.
func TestAgentUnauthenticated(t *testing.T) {
	e := newAgentEnv(t)
	key, csr := newKey(t, "")
	workload, err := e.ca.IssueX509SVID(ca.X509Request{ID: spiffeid.RequireFromString("spiffe://cluster.local/ns/shop/sa/web"), CSR: csr})
	if err != nil {
		t.Fatal(err)
	}
	const noCert = "this call needs the agent's X.509-SVID as the TLS client certificate: attest first (POST /v1/agent/attest) and call with the SVID it returns"
	const notAgent = "the client certificate is the X.509-SVID of spiffe://cluster.local/ns/shop/sa/web, not of a kzero agent (spiffe://cluster.local/kzero/agent/<node>): only agents call this API"
	for _, tc := range []struct {
		name, method, path string
		svid               *x509svid.SVID
		msg, what          string
	}{
		{"x509 without a certificate", http.MethodPost, agentapi.X509SVIDPath, nil, noCert, "X.509-SVID"},
		{"jwt without a certificate", http.MethodPost, agentapi.JWTSVIDPath, nil, noCert, "JWT-SVID"},
		{"bundle without a certificate", http.MethodGet, agentapi.BundlePath, nil, noCert, ""},
		{"x509 with a workload's SVID", http.MethodPost, agentapi.X509SVIDPath, e.svidOf(workload.Chain, key), notAgent, "X.509-SVID"},
		{"bundle with a workload's SVID", http.MethodGet, agentapi.BundlePath, e.svidOf(workload.Chain, key), notAgent, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body any
			if tc.method == http.MethodPost {
				body = agentapi.X509SVIDRequest{ID: "spiffe://cluster.local/ns/shop/sa/web", CSR: csr}
			}
			status, out := e.call(e.client(tc.svid), tc.method, tc.path, body)
			if got := errorOf(t, out); status != http.StatusUnauthorized || got != tc.msg {
				t.Errorf("%d %q\nwant 401 %q", status, got, tc.msg)
			}
			ev := e.audit.take()
			if tc.what == "" {
				if len(ev) != 0 {
					t.Errorf("audit events %+v for the bundle, want none", ev)
				}
				return
			}
			if len(ev) != 1 || ev[0].Outcome != audit.OutcomeFailure || ev[0].Reason != "refused "+tc.what+": "+tc.msg || ev[0].Issuance.SPIFFEID != td.ID() {
				t.Errorf("audit events %+v, want one failure %q for %s", ev, "refused "+tc.what+": "+tc.msg, td.ID())
			}
		})
	}

	t.Run("certificate of another CA", func(t *testing.T) {
		other := newCA(t, td, nil)
		key, csr := newKey(t, "")
		s, err := other.IssueX509SVID(ca.X509Request{ID: spiffeid.RequireFromString("spiffe://cluster.local/kzero/agent/node-a"), CSR: csr})
		if err != nil {
			t.Fatal(err)
		}
		svid := &x509svid.SVID{ID: s.ID, Certificates: s.Certificates, PrivateKey: key}
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, e.url+agentapi.BundlePath, http.NoBody)
		if err != nil {
			t.Fatal(err)
		}
		res, err := e.client(svid).Do(req)
		if err == nil {
			res.Body.Close()
			t.Fatalf("a certificate of another CA was accepted: %d", res.StatusCode)
		}
		if !strings.HasSuffix(err.Error(), "remote error: tls: bad certificate") {
			t.Errorf("err = %v, want the handshake refused (bad certificate)", err)
		}
	})
}

// TestAgentSVIDExpired: a connection made with an agent's SVID serves no
// call once that SVID has expired.
func TestAgentSVIDExpired(t *testing.T) {
	e := newAgentEnv(t, func(c *authority.AgentAPIConfig) { c.AgentSVIDTTL = time.Minute })
	svid := e.attest("token-a")
	client := e.client(svid)
	if status, body := e.call(client, http.MethodGet, agentapi.BundlePath, nil); status != http.StatusOK {
		t.Fatalf("%d %s", status, body)
	}
	e.clk.Add(2 * time.Minute)
	leaf := svid.Certificates[0]
	status, body := e.call(client, http.MethodGet, agentapi.BundlePath, nil)
	want := fmt.Sprintf("the client X.509-SVID of spiffe://cluster.local/kzero/agent/node-a is valid from %s to %s, not now: attest again (POST /v1/agent/attest) for a new one",
		leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))
	if got := errorOf(t, body); status != http.StatusUnauthorized || got != want {
		t.Errorf("%d %q\nwant 401 %q", status, got, want)
	}
}

// TestAgentAPIRoutes: other paths get 404, other methods 405.
func TestAgentAPIRoutes(t *testing.T) {
	e := newAgentEnv(t)
	for _, tc := range []struct {
		name, method, path string
		status             int
		msg                string
	}{
		{"get attest", http.MethodGet, agentapi.AttestPath, http.StatusMethodNotAllowed, "/v1/agent/attest answers POST only"},
		{"post bundle", http.MethodPost, agentapi.BundlePath, http.StatusMethodNotAllowed, "/v1/agent/bundle answers GET only"},
		{"another path", http.MethodGet, "/v1/agent/", http.StatusNotFound,
			"no such call: the agent API answers /v1/agent/attest, /v1/agent/x509svid, /v1/agent/jwtsvid and /v1/agent/bundle"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := e.call(e.client(nil), tc.method, tc.path, nil)
			if got := errorOf(t, body); status != tc.status || got != tc.msg {
				t.Errorf("%d %q\nwant %d %q", status, got, tc.status, tc.msg)
			}
		})
	}
	if ev := e.audit.take(); len(ev) != 0 {
		t.Errorf("audit events %+v, want none", ev)
	}
}

// TestNewAgentAPI: a bad configuration is refused with every problem.
func TestNewAgentAPI(t *testing.T) {
	ok := func(c *authority.AgentAPIConfig) {
		c.TrustDomain, c.Namespace = td, agentNS
		c.CA = func() authority.AgentCA { return nil }
		c.Tokens, c.Cluster, c.Audit, c.Log = tokenTable{}, &memCluster{}, newMemAudit(t), slog.New(slog.DiscardHandler)
	}
	for _, tc := range []struct {
		name   string
		mod    func(*authority.AgentAPIConfig)
		want   string
		wantID string
	}{
		{name: "empty", mod: func(*authority.AgentAPIConfig) {},
			want: "authority: invalid agent API config: trustDomain: required\nnamespace: required\nca: required\ntokens: required\ncluster: required\naudit: required\nlog: required"},
		{name: "defaults", mod: ok, wantID: "spiffe://cluster.local/ns/kzero-system/sa/kzero-authority"},
		{name: "ID given", mod: func(c *authority.AgentAPIConfig) {
			ok(c)
			c.ID = spiffeid.RequireFromString("spiffe://cluster.local/kzero/authority")
		}, wantID: "spiffe://cluster.local/kzero/authority"},
		{name: "ID in another trust domain", mod: func(c *authority.AgentAPIConfig) {
			ok(c)
			c.ID = spiffeid.RequireFromString("spiffe://example.org/kzero/authority")
		}, want: "authority: invalid agent API config: id: spiffe://example.org/kzero/authority is not in trust domain cluster.local: the CA issues SVIDs only in its own"},
		{name: "TTLs out of bounds", mod: func(c *authority.AgentAPIConfig) {
			ok(c)
			c.AgentSVIDTTL, c.WorkloadSVIDTTL = 30*time.Second, 25*time.Hour
		}, want: "authority: invalid agent API config: agentSVIDTTL: 30s is not between 1m0s and 24h0m0s (the CA's maximum)\nworkloadSVIDTTL: 25h0m0s is not between 1m0s and 24h0m0s (the CA's maximum)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cfg authority.AgentAPIConfig
			tc.mod(&cfg)
			api, err := authority.NewAgentAPI(cfg)
			if tc.want != "" {
				if err == nil || err.Error() != tc.want {
					t.Errorf("err = %v\nwant  %s", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if api.ID().String() != tc.wantID {
				t.Errorf("ID %s, want %s", api.ID(), tc.wantID)
			}
		})
	}
	if want := fmt.Sprintf(":%d", agentapi.DefaultPort); authority.DefaultAgentAddr != want {
		t.Errorf("DefaultAgentAddr %s, want %s (agentapi.DefaultPort)", authority.DefaultAgentAddr, want)
	}
}

// TestAgentAPIRateLimits: one address gets AttestBurst attestations at
// once and AttestRate a second after, one agent SignBurst SVID requests;
// the next gets 429 with Retry-After, audited, and the bucket refills
// with time. Another agent has a bucket of its own.
func TestAgentAPIRateLimits(t *testing.T) {
	e := newAgentEnv(t, func(c *authority.AgentAPIConfig) {
		c.AttestRate, c.AttestBurst, c.SignRate, c.SignBurst = 1, 2, 1, 2
	})
	svidA := e.attest("token-a")
	svidB := e.attest("token-b")
	e.audit.take()
	_, csr := newKey(t, "")
	status, body := e.call(e.client(nil), http.MethodPost, agentapi.AttestPath, agentapi.AttestRequest{Token: "token-a", CSR: csr})
	want := "too many attestations from 127.0.0.1: at most 1 a second (2 at once) from one address; retry in a second"
	if got := errorOf(t, body); status != http.StatusTooManyRequests || got != want {
		t.Errorf("a third attestation: %d %q\nwant 429 %q", status, got, want)
	}
	if ev := e.audit.take(); len(ev) != 1 || ev[0].Outcome != audit.OutcomeFailure || ev[0].Reason != "refused attestation: "+want ||
		!strings.HasPrefix(ev[0].Issuance.Requester, "address/127.0.0.1:") {
		t.Errorf("audit events %+v, want one refusal of the attestation from 127.0.0.1", ev)
	}

	sign := func(svid *x509svid.SVID) (int, string) {
		_, csr := newKey(t, "")
		status, body := e.call(e.client(svid), http.MethodPost, agentapi.X509SVIDPath, agentapi.X509SVIDRequest{ID: "spiffe://cluster.local/ns/shop/sa/web", CSR: csr})
		if status == http.StatusOK {
			return status, ""
		}
		return status, errorOf(t, body)
	}
	for i := range 2 {
		if status, msg := sign(svidA); status != http.StatusOK {
			t.Fatalf("request %d of node-a: %d %q", i+1, status, msg)
		}
	}
	e.audit.take()
	status, msg := sign(svidA)
	want = "too many X.509-SVID requests from the agent of node node-a: at most 1 a second (2 at once) from one agent; retry in a second"
	if status != http.StatusTooManyRequests || msg != want {
		t.Errorf("a third request of node-a: %d %q\nwant 429 %q", status, msg, want)
	}
	e.wantEvent(audit.OutcomeFailure, audit.SVIDTypeX509, "spiffe://cluster.local", "node/node-a", "refused X.509-SVID: "+want)
	// JWT-SVIDs have a bucket of their own: X.509-SVIDs spent do not hold
	// them back.
	status, body = e.call(e.client(svidA), http.MethodPost, agentapi.JWTSVIDPath, agentapi.JWTSVIDRequest{ID: "spiffe://cluster.local/ns/shop/sa/web", Audience: []string{"db"}})
	if status != http.StatusOK {
		t.Errorf("node-a's first JWT-SVID after its X.509-SVIDs ran out: %d %s", status, body)
	}
	e.audit.take()
	// node-b's bucket is its own; node-b asks for a pod of node-a: 403,
	// not 429.
	if status, _ := sign(svidB); status != http.StatusForbidden {
		t.Errorf("node-b's first request: %d, want 403 (its own bucket, and not its pod)", status)
	}
	e.audit.take()
	e.clk.Add(time.Second)
	if status, msg := sign(svidA); status != http.StatusOK {
		t.Errorf("node-a a second later: %d %q", status, msg)
	}
}
