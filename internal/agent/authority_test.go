package agent_test

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kzero.dev/kzero/api/v1alpha1"
	"kzero.dev/kzero/internal/agent"
	"kzero.dev/kzero/internal/agentapi"
	"kzero.dev/kzero/internal/audit"
	"kzero.dev/kzero/internal/authority"
	"kzero.dev/kzero/internal/ca"
	"kzero.dev/kzero/internal/ca/catest"
	"kzero.dev/kzero/internal/workloadapi"
)

// realAuthority is the authority's own agent API (internal/authority) on
// a real CA, on the system clock, with the TokenReview and the cluster's
// pods in memory: the agent of node-a, and the pods web-0 (shop/web) on
// node-a and db-0 (shop/db) on node-b.
type realAuthority struct {
	ca     *ca.CA
	url    string
	events *memAudit
}

func startAuthority(t testing.TB) *realAuthority {
	t.Helper()
	c, err := ca.New(t.Context(), ca.Config{TrustDomain: td, Store: catest.NewMemStore(nil)})
	if err != nil {
		t.Fatal(err)
	}
	const agentPod, agentPodUID = "kzero-agent-x7k2p", "9d2c5e3a-0000-4000-8000-000000000001"
	cluster := &memCluster{
		namespaces: map[string]*corev1.Namespace{"shop": {ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{v1alpha1.EnrolledLabel: "true"}}}},
		pods: []*corev1.Pod{
			{
				ObjectMeta: metav1.ObjectMeta{Namespace: "kzero-system", Name: agentPod, UID: agentPodUID, OwnerReferences: []metav1.OwnerReference{{
					APIVersion: "apps/v1", Kind: "DaemonSet", Name: "kzero-agent", UID: "1", Controller: new(true)}}},
				Spec:   corev1.PodSpec{NodeName: node, ServiceAccountName: "kzero-agent"},
				Status: corev1.PodStatus{Phase: corev1.PodRunning},
			},
			{
				ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-0", UID: podUID},
				Spec:       corev1.PodSpec{NodeName: node, ServiceAccountName: "web"},
				Status:     corev1.PodStatus{Phase: corev1.PodRunning},
			},
			{
				ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "db-0", UID: "9d2c5e3a-0000-4000-8000-000000000002"},
				Spec:       corev1.PodSpec{NodeName: "node-b", ServiceAccountName: "db"},
				Status:     corev1.PodStatus{Phase: corev1.PodRunning},
			},
		},
	}
	tokens := tokenReviewer{"token-1": authnv1.UserInfo{
		Username: "system:serviceaccount:kzero-system:kzero-agent",
		Extra: map[string]authnv1.ExtraValue{
			"authentication.kubernetes.io/pod-name":  {agentPod},
			"authentication.kubernetes.io/pod-uid":   {agentPodUID},
			"authentication.kubernetes.io/node-name": {node},
		},
	}}
	events := &memAudit{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	api, err := authority.NewAgentAPI(authority.AgentAPIConfig{
		Listener: ln, TrustDomain: td, Namespace: "kzero-system",
		CA: func() authority.AgentCA { return c }, Tokens: tokens, Cluster: cluster,
		Audit: events, Log: testLog(t).With("component", "authority"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if api.ID() != authorityID {
		t.Fatalf("the authority presents %s; the agent expects %s by default", api.ID(), authorityID)
	}
	run(t, api.Run)
	return &realAuthority{ca: c, url: "https://" + ln.Addr().String(), events: events}
}

// attestedClient is an agent's client of a, attested and running.
func (a *realAuthority) attestedClient(t testing.TB, bundles *workloadapi.Bundles) *agent.Client {
	t.Helper()
	s := &standin{ca: a.ca} // for the bundle file only
	files := newAgentFiles(t, s)
	client, err := agent.NewClient(agent.ClientConfig{
		URL: a.url, TrustDomain: td, NodeName: node, AuthorityID: authorityID,
		BundleFile: files.bundle, TokenFile: files.token, Bundles: bundles, Log: testLog(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Attest(t.Context()); err != nil {
		t.Fatal(err)
	}
	return client
}

// The client against the authority's own agent API (internal/authority),
// on the system clock: the two sides agree on the wire. The TokenReview
// and the cluster's pods are in memory here; the end-to-end test runs both
// against a real cluster.
func TestAgainstTheAuthoritysAgentAPI(t *testing.T) {
	a := startAuthority(t)
	c, events := a.ca, a.events
	bundles := &workloadapi.Bundles{}
	client := a.attestedClient(t, bundles)
	if got := events.requesters(); !slices.Equal(got, []string{"node/" + node}) {
		t.Errorf("the authority audited issuances to %q, want the agent of %s", got, node)
	}

	run(t, client.Run)
	w := serveWorkloadAPI(t, client, bundles, nil)
	if got, want := w.x509Bundle(t), c.Bundle().X509Authorities(); !sameCerts(got, want) {
		t.Errorf("the Workload API serves %d X.509 authorities, not the authority's %d", len(got), len(want))
	}

	_, csr := catest.NewCSR(t)
	if _, err := client.SignX509SVID(t.Context(), webID, csr); err != nil {
		t.Errorf("SignX509SVID: %v", err)
	}
	if _, err := client.SignJWTSVID(t.Context(), webID, []string{"api"}); err != nil {
		t.Errorf("SignJWTSVID: %v", err)
	}
	// An audience over the limits (which the Workload API enforces first):
	// refused with them, and audited without the audience.
	for _, tc := range []struct {
		audience []string
		msg      string
	}{
		{strings.Split("a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q", ","), "17 audiences asked for; a JWT-SVID has at most 16, each of at most 2048 bytes: ask for fewer"},
		{[]string{strings.Repeat("a", 60_000)}, "audience[0] is 60000 bytes long; a JWT-SVID has at most 16 audiences, each of at most 2048 bytes: name the audience with a shorter string, such as its URL or SPIFFE ID"},
	} {
		_, err := client.SignJWTSVID(t.Context(), webID, tc.audience)
		if ae, ok := errors.AsType[*agent.AuthorityError](err); !ok || ae.Status != 400 || ae.Message != tc.msg {
			t.Errorf("a JWT-SVID for %d audiences of up to %d bytes: %v, want an *AuthorityError 400 %q", len(tc.audience), len(tc.audience[0]), err, tc.msg)
		}
		last := events.last()
		if last.Outcome != audit.OutcomeFailure || last.Issuance == nil || last.Issuance.Audience != nil || !strings.HasSuffix(last.Reason, tc.msg) {
			t.Errorf("the refusal was audited as %+v, want a failure without the audience", last)
		}
	}
	// A pod of another node: refused, with the authority's message.
	_, err := client.SignX509SVID(t.Context(), spiffeid.RequireFromString("spiffe://cluster.local/ns/shop/sa/db"), csr)
	ae, ok := errors.AsType[*agent.AuthorityError](err)
	if !ok || ae.Status != 403 || ae.Path != agentapi.X509SVIDPath || ae.Message == "" {
		t.Errorf("the SVID of a pod of another node: %v, want an *AuthorityError 403 with a message", err)
	}
	t.Logf("refused: %v", err)
}

// tokenReviewer stands in for kube-apiserver's TokenReview: the tokens it
// knows authenticate for agentapi.TokenAudience as their user.
type tokenReviewer map[string]authnv1.UserInfo

func (r tokenReviewer) Create(_ context.Context, review *authnv1.TokenReview, _ metav1.CreateOptions) (*authnv1.TokenReview, error) {
	out := review.DeepCopy()
	if u, ok := r[review.Spec.Token]; ok && slices.Contains(review.Spec.Audiences, agentapi.TokenAudience) {
		out.Status = authnv1.TokenReviewStatus{Authenticated: true, User: u, Audiences: []string{agentapi.TokenAudience}}
	} else {
		out.Status.Error = "invalid bearer token"
	}
	return out, nil
}

// memCluster holds the cluster's namespaces and pods in memory.
type memCluster struct {
	namespaces map[string]*corev1.Namespace
	pods       []*corev1.Pod
}

func (m *memCluster) Namespace(_ context.Context, name string) (*corev1.Namespace, error) {
	return m.namespaces[name], nil
}

func (m *memCluster) Pod(_ context.Context, namespace, name string) (*corev1.Pod, error) {
	for _, p := range m.pods {
		if p.Namespace == namespace && p.Name == name {
			return p, nil
		}
	}
	return nil, nil
}

func (m *memCluster) PodsOnNode(_ context.Context, namespace, node string) ([]*corev1.Pod, error) {
	var out []*corev1.Pod
	for _, p := range m.pods {
		if p.Namespace == namespace && p.Spec.NodeName == node {
			out = append(out, p)
		}
	}
	return out, nil
}

// memAudit keeps the authority's audit events.
type memAudit struct {
	mu     sync.Mutex
	events []audit.Event
}

func (m *memAudit) Record(e audit.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.events = append(m.events, e)
	return nil
}

// issued is the number of successful issuances of type typ.
func (m *memAudit) issued(typ string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, e := range m.events {
		if e.Outcome == audit.OutcomeSuccess && e.Issuance != nil && e.Issuance.Type == typ {
			n++
		}
	}
	return n
}

// last is the last event.
func (m *memAudit) last() audit.Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.events) == 0 {
		return audit.Event{}
	}
	return m.events[len(m.events)-1]
}

// requesters are those of the successful issuances.
func (m *memAudit) requesters() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, e := range m.events {
		if e.Outcome == audit.OutcomeSuccess && e.Issuance != nil {
			out = append(out, e.Issuance.Requester)
		}
	}
	return out
}
