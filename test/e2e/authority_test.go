//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"kzero.dev/kzero/api/v1alpha1"
	"kzero.dev/kzero/internal/audit"
	"kzero.dev/kzero/internal/authority"
	"kzero.dev/kzero/internal/ca"
	"kzero.dev/kzero/internal/ca/catest"
	"kzero.dev/kzero/internal/install"
	"kzero.dev/kzero/internal/kubestore"
)

// podcertImage is built from ./podcert: it prints the SPIFFE ID of the
// credential bundle kubelet mounts, then sleeps.
const podcertImage = "kzero.local/e2e-podcert:v1"

var loadPodcert = sync.OnceValue(func() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	return kube.LoadImage(ctx, "./test/e2e/podcert", podcertImage)
})

// syncBuffer is a bytes.Buffer safe for concurrent use: the audit stream.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// events returns the audit events written so far.
func (s *syncBuffer) events(t testing.TB) []audit.Event {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []audit.Event
	for _, line := range strings.Split(strings.TrimSpace(s.b.String()), "\n") {
		if line == "" {
			continue
		}
		var e audit.Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		out = append(out, e)
	}
	return out
}

// tlog writes the authority's log to the test's log.
type tlog struct{ t testing.TB }

func (w tlog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

var trustDomain = spiffeid.RequireTrustDomainFromString("cluster.local")

// runAuthority runs kzero's authority in this process, as a service account
// with only the RBAC docs/authority.md lists, with its CA state in a Secret of a namespace of its own. It stops
// when the test ends, and its ClusterTrustBundle is deleted.
func runAuthority(t testing.TB) *syncBuffer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	storeNS := namespace(t)
	client := authorityClient(t, storeNS)
	store, err := kubestore.New(client.CoreV1(), storeNS, "kzero-ca")
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.New(ctx, ca.Config{TrustDomain: trustDomain, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	out := &syncBuffer{}
	rec, err := audit.NewRecorder(audit.Config{Component: audit.ComponentAuthority, Out: out})
	if err != nil {
		t.Fatal(err)
	}
	a, err := authority.New(authority.Config{Client: client, CA: c, TrustDomain: trustDomain, Audit: rec,
		Log: slog.New(slog.NewTextHandler(tlog{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("authority.Run returned %v, want context.Canceled", err)
		}
		_ = kube.Client.CertificatesV1().ClusterTrustBundles().Delete(context.Background(), v1alpha1.TrustBundleName("cluster.local"), metav1.DeleteOptions{})
	})
	return out
}

// authorityClient is a client that acts as a service account bound to
// exactly the RBAC docs/authority.md lists, with the CA's Secret and the
// Lease in storeNS.
func authorityClient(t testing.TB, storeNS string) kubernetes.Interface {
	t.Helper()
	ctx := t.Context()
	name := "kzero-e2e-authority-" + storeNS
	rules := install.ClusterRules() // exactly what kzero install ships
	subject := []rbacv1.Subject{{Kind: "ServiceAccount", Name: "kzero-authority", Namespace: storeNS}}
	rbac := kube.Client.RbacV1()
	if _, err := kube.Client.CoreV1().ServiceAccounts(storeNS).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "kzero-authority"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := rbac.ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rbac.ClusterRoles().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	if _, err := rbac.ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: name}, Subjects: subject}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rbac.ClusterRoleBindings().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	if _, err := rbac.Roles(storeNS).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "kzero-authority"}, Rules: install.NamespaceRules()},
		metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := rbac.RoleBindings(storeNS).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "kzero-authority"},
		RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "kzero-authority"}, Subjects: subject}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg := rest.CopyConfig(kube.Config)
	cfg.QPS, cfg.Burst = authority.ClientQPS, authority.ClientBurst // as kzero authority sets them
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + storeNS + ":kzero-authority"}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// RBAC reaches the authorizer's cache a moment later.
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := client.CoreV1().Secrets(storeNS).Get(ctx, "kzero-ca", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		t.Fatalf("the authority's RBAC did not take effect: %v", err)
	}
	return client
}

// enrolledNamespace is a test namespace labeled kzero.dev/enrolled=true.
func enrolledNamespace(t testing.TB) string {
	t.Helper()
	ns := namespace(t)
	patch := []byte(`{"metadata":{"labels":{"kzero.dev/enrolled":"true"}}}`)
	if _, err := kube.Client.CoreV1().Namespaces().Patch(t.Context(), ns, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatalf("enroll namespace %s: %v", ns, err)
	}
	return ns
}

// enrolledWithSA is an enrolled test namespace with the service account
// sa.
func enrolledWithSA(t testing.TB, sa string) string {
	t.Helper()
	ns := enrolledNamespace(t)
	if _, err := kube.Client.CoreV1().ServiceAccounts(ns).Create(t.Context(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create service account %s/%s: %v", ns, sa, err)
	}
	return ns
}

// identityPod is a pod of the podcert image running as service account sa,
// with kzero's podCertificate volume written out in its manifest.
func identityPod(name, sa string) *corev1.Pod {
	pod := testPod(name)
	pod.Spec.ServiceAccountName = sa
	pod.Spec.Containers[0].Image = podcertImage
	pod.Spec.Containers[0].Args = nil
	pod.Spec.Volumes = []corev1.Volume{{
		Name: "kzero-identity",
		VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{PodCertificate: &corev1.PodCertificateProjection{
				SignerName: authority.SignerName, KeyType: "ECDSAP256", CredentialBundlePath: "credentialbundle.pem",
			}}},
		}},
	}}
	pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "kzero-identity", MountPath: "/var/run/secrets/kzero.dev/identity", ReadOnly: true}}
	return pod
}

// closedRequest waits until a PodCertificateRequest for pod in ns has its
// Issued, Denied or Failed condition, and returns it with that condition.
func closedRequest(t *testing.T, ns string, match func(*certv1.PodCertificateRequest) bool) (*certv1.PodCertificateRequest, metav1.Condition) {
	t.Helper()
	var got *certv1.PodCertificateRequest
	var cond metav1.Condition
	err := wait.PollUntilContextTimeout(t.Context(), 250*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		l, err := kube.Client.CertificatesV1().PodCertificateRequests(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for i := range l.Items {
			r := &l.Items[i]
			if !match(r) {
				continue
			}
			for _, c := range r.Status.Conditions {
				switch c.Type {
				case certv1.PodCertificateRequestConditionTypeIssued, certv1.PodCertificateRequestConditionTypeDenied, certv1.PodCertificateRequestConditionTypeFailed:
					got, cond = r, c
					return true, nil
				}
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no answered PodCertificateRequest in %s: %v", ns, err)
	}
	return got, cond
}

func forPod(name string) func(*certv1.PodCertificateRequest) bool {
	return func(r *certv1.PodCertificateRequest) bool { return r.Spec.PodName == name }
}

// auditEvent waits for the audit event about requester with outcome.
func auditEvent(t testing.TB, out *syncBuffer, requester string, outcome audit.Outcome) audit.Event {
	t.Helper()
	return waitEvent(t, out, fmt.Sprintf("%s issuance event for %s", outcome, requester), func(e audit.Event) bool {
		return e.Kind == audit.KindIssuance && e.Issuance != nil && e.Issuance.Requester == requester && e.Outcome == outcome
	})
}

// waitEvent waits up to 10 s for the first event of the audit stream that
// match accepts; what names it in the failure.
func waitEvent(t testing.TB, out *syncBuffer, what string, match func(audit.Event) bool) audit.Event {
	t.Helper()
	var found *audit.Event
	_ = wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		for _, e := range out.events(t) {
			if match(e) {
				found = &e
				return true, nil
			}
		}
		return false, nil
	})
	if found == nil {
		t.Fatalf("no %s in the audit stream:\n%v", what, out.events(t))
	}
	return *found
}

func requesterOf(r *certv1.PodCertificateRequest) string {
	return fmt.Sprintf("pod/%s/%s/%s", r.Namespace, r.Spec.PodName, r.Spec.PodUID)
}

func TestAuthority(t *testing.T) {
	if err := loadPodcert(); err != nil {
		t.Fatal(err)
	}
	if err := kube.CheckContained(t.Context()); err != nil {
		t.Fatal(err)
	}
	out := runAuthority(t)
	ns := enrolledWithSA(t, "web")
	createPod(t, ns, identityPod("web", "web"))
	wantID := fmt.Sprintf("spiffe://cluster.local/ns/%s/sa/web", ns)

	t.Run("an enrolled pod gets its SVID", func(t *testing.T) {
		pod := waitPod(t, ns, "web", 2*time.Minute, ready)
		if log := podLog(t, ns, "web"); !strings.Contains(log, "spiffe-id: "+wantID+"\n") {
			t.Errorf("pod log = %q, want it to show spiffe-id: %s", log, wantID)
		}
		r, cond := closedRequest(t, ns, forPod("web"))
		if cond.Type != certv1.PodCertificateRequestConditionTypeIssued {
			t.Fatalf("condition %s %s: %s, want Issued", cond.Type, cond.Reason, cond.Message)
		}
		if r.Spec.PodUID != pod.UID {
			t.Errorf("request for pod UID %s, the pod is %s", r.Spec.PodUID, pod.UID)
		}
		certs := parseChain(t, r.Status.CertificateChain)
		leaf := certs[0]
		if !r.Status.NotBefore.Time.Equal(leaf.NotBefore) || !r.Status.NotAfter.Time.Equal(leaf.NotAfter) {
			t.Errorf("status validity %s..%s, leaf %s..%s", r.Status.NotBefore, r.Status.NotAfter, leaf.NotBefore, leaf.NotAfter)
		}
		if got := leaf.NotAfter.Sub(leaf.NotBefore); got != time.Hour {
			t.Errorf("leaf lifetime %s, want 1h", got)
		}
		if half := leaf.NotBefore.Add(30 * time.Minute); !r.Status.BeginRefreshAt.Time.Equal(half) {
			t.Errorf("beginRefreshAt %s, want half-life %s", r.Status.BeginRefreshAt, half)
		}

		ctb, err := kube.Client.CertificatesV1().ClusterTrustBundles().Get(t.Context(), v1alpha1.TrustBundleName("cluster.local"), metav1.GetOptions{})
		if err != nil {
			t.Fatalf("the ClusterTrustBundle: %v", err)
		}
		if ctb.Spec.SignerName != authority.SignerName {
			t.Errorf("ClusterTrustBundle signer %q", ctb.Spec.SignerName)
		}
		bundle, err := x509bundle.Parse(trustDomain, []byte(ctb.Spec.TrustBundle))
		if err != nil {
			t.Fatalf("ClusterTrustBundle's trustBundle: %v", err)
		}
		id, _, err := x509svid.Verify(certs, bundle)
		if err != nil {
			t.Fatalf("the issued chain does not verify against the ClusterTrustBundle: %v", err)
		}
		if id.String() != wantID {
			t.Errorf("verified ID %s, want %s", id, wantID)
		}

		e := auditEvent(t, out, requesterOf(r), audit.OutcomeSuccess)
		if e.Issuance.SPIFFEID.String() != wantID || e.Issuance.KeyType != "ECDSA-P256" || e.Issuance.Serial != fmt.Sprintf("%x", leaf.SerialNumber) {
			t.Errorf("audit event %+v does not describe the leaf", e.Issuance)
		}
	})

	t.Run("a pod of a namespace not enrolled is denied", func(t *testing.T) {
		other := namespace(t)
		createPod(t, other, identityPod("stranger", "default"))
		r, cond := closedRequest(t, other, forPod("stranger"))
		if cond.Type != certv1.PodCertificateRequestConditionTypeDenied || cond.Reason != "NotEnrolled" {
			t.Fatalf("condition %s %s: %s, want Denied NotEnrolled", cond.Type, cond.Reason, cond.Message)
		}
		want := fmt.Sprintf("namespace %s is not enrolled in kzero: label it kzero.dev/enrolled=true to give its pods identities", other)
		if cond.Message != want {
			t.Errorf("message %q, want %q", cond.Message, want)
		}
		if r.Status.CertificateChain != "" {
			t.Error("a denied request has a certificate chain")
		}
		e := auditEvent(t, out, requesterOf(r), audit.OutcomeFailure)
		if !strings.Contains(e.Reason, "NotEnrolled: "+want) {
			t.Errorf("audit reason %q does not say NotEnrolled", e.Reason)
		}
	})

	t.Run("a request that lies about the pod is denied", func(t *testing.T) {
		pod, err := kube.Client.CoreV1().Pods(ns).Get(t.Context(), "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		sa, err := kube.Client.CoreV1().ServiceAccounts(ns).Get(t.Context(), "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		node, err := kube.Client.CoreV1().Nodes().Get(t.Context(), pod.Spec.NodeName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		lie := &certv1.PodCertificateRequest{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "web-lie-"},
			Spec: certv1.PodCertificateRequestSpec{
				SignerName: authority.SignerName, PodName: "web", PodUID: uuid.NewUUID(),
				ServiceAccountName: "web", ServiceAccountUID: sa.UID,
				NodeName: types.NodeName(node.Name), NodeUID: node.UID,
				StubPKCS10Request: stubCSR(t),
			},
		}
		// The node's own credentials cannot even create it: kube-apiserver's
		// NodeRestriction checks the pod's UID.
		nodeClient := nodeClientset(t, node.Name)
		if _, err := nodeClient.CertificatesV1().PodCertificateRequests(ns).Create(t.Context(), lie, metav1.CreateOptions{}); err == nil {
			t.Error("kube-apiserver let the node create a request with a wrong pod UID")
		} else {
			t.Logf("as the node: %v", err)
		}
		// An admin can: the authority checks for itself.
		made, err := kube.Client.CertificatesV1().PodCertificateRequests(ns).Create(t.Context(), lie, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("create the lying request as admin: %v", err)
		}
		r, cond := closedRequest(t, ns, func(r *certv1.PodCertificateRequest) bool { return r.Name == made.Name })
		if cond.Type != certv1.PodCertificateRequestConditionTypeDenied || cond.Reason != "PodMismatch" {
			t.Fatalf("condition %s %s: %s, want Denied PodMismatch", cond.Type, cond.Reason, cond.Message)
		}
		want := fmt.Sprintf("pod %s/web has UID %s, but the request names UID %s: the request is not from that pod", ns, pod.UID, lie.Spec.PodUID)
		if cond.Message != want {
			t.Errorf("message %q, want %q", cond.Message, want)
		}
		auditEvent(t, out, requesterOf(r), audit.OutcomeFailure)
	})

	t.Run("a request for a terminating pod is denied", func(t *testing.T) {
		// A finalizer keeps the deleted pod terminating, as a long grace
		// period would; kubelet's own request for it is what the node
		// would send.
		pod := identityPod("leaving", "web")
		pod.Finalizers = []string{"kzero.dev/e2e-hold"}
		createPod(t, ns, pod)
		t.Cleanup(func() {
			patch := []byte(`{"metadata":{"finalizers":null}}`)
			_, _ = kube.Client.CoreV1().Pods(ns).Patch(context.Background(), "leaving", types.MergePatchType, patch, metav1.PatchOptions{})
		})
		p := waitPod(t, ns, "leaving", 2*time.Minute, ready)
		closedRequest(t, ns, forPod("leaving")) // its first certificate, issued while it ran
		if err := kube.Client.CoreV1().Pods(ns).Delete(t.Context(), "leaving", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitPod(t, ns, "leaving", time.Minute, func(p *corev1.Pod) (bool, error) { return p.DeletionTimestamp != nil, nil })
		sa, err := kube.Client.CoreV1().ServiceAccounts(ns).Get(t.Context(), "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		node, err := kube.Client.CoreV1().Nodes().Get(t.Context(), p.Spec.NodeName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		req := &certv1.PodCertificateRequest{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "leaving-refresh-"},
			Spec: certv1.PodCertificateRequestSpec{
				SignerName: authority.SignerName, PodName: "leaving", PodUID: p.UID,
				ServiceAccountName: "web", ServiceAccountUID: sa.UID,
				NodeName: types.NodeName(node.Name), NodeUID: node.UID,
				StubPKCS10Request: stubCSR(t),
			},
		}
		made, err := nodeClientset(t, node.Name).CertificatesV1().PodCertificateRequests(ns).Create(t.Context(), req, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("create the request as the pod's node: %v", err)
		}
		r, cond := closedRequest(t, ns, func(r *certv1.PodCertificateRequest) bool { return r.Name == made.Name })
		if cond.Type != certv1.PodCertificateRequestConditionTypeDenied || cond.Reason != "PodMismatch" ||
			!strings.Contains(cond.Message, fmt.Sprintf("pod %s/leaving is terminating", ns)) {
			t.Fatalf("condition %s %s: %s, want Denied PodMismatch: the pod is terminating", cond.Type, cond.Reason, cond.Message)
		}
		t.Logf("denied: %s", cond.Message)
		auditEvent(t, out, requesterOf(r), audit.OutcomeFailure)
	})
}

// nodeClientset is a client with the credentials of node's kubelet.
func nodeClientset(t testing.TB, node string) kubernetes.Interface {
	t.Helper()
	cfg, err := kube.NodeConfig(node)
	if err != nil {
		t.Fatal(err)
	}
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// stubCSR is an empty PKCS#10 request signed by a new P-256 key, as kubelet
// makes them.
func stubCSR(t testing.TB) []byte {
	t.Helper()
	_, der := catest.NewCSR(t)
	return der
}

func parseChain(t testing.TB, chain string) []*x509.Certificate {
	t.Helper()
	var certs []*x509.Certificate
	rest := []byte(chain)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, c)
	}
	if len(certs) < 2 {
		t.Fatalf("chain of %d certificates, want the leaf and its issuing CA", len(certs))
	}
	return certs
}

// The Secret store: created on first Save, updated only at the version it
// read, and read back whole.
func TestKubeStore(t *testing.T) {
	ns := namespace(t)
	ctx := t.Context()
	a, err := kubestore.New(kube.Client.CoreV1(), ns, "kzero-ca")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Load(ctx); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of a missing Secret: %v, want fs.ErrNotExist", err)
	}
	if err := a.Save(ctx, []byte(`{"v":1}`)); err != nil {
		t.Fatalf("first Save: %v", err)
	}
	sec, err := kube.Client.CoreV1().Secrets(ns).Get(ctx, "kzero-ca", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sec.Type != kubestore.SecretType || string(sec.Data[kubestore.DataKey]) != `{"v":1}` {
		t.Errorf("Secret type %q data %q", sec.Type, sec.Data)
	}

	b, _ := kubestore.New(kube.Client.CoreV1(), ns, "kzero-ca")
	if doc, err := b.Load(ctx); err != nil || string(doc) != `{"v":1}` {
		t.Fatalf("Load by a second store: %q, %v", doc, err)
	}
	if err := a.Save(ctx, []byte(`{"v":2}`)); err != nil {
		t.Fatalf("second Save: %v", err)
	}
	err = b.Save(ctx, []byte(`{"v":"stale"}`))
	if !errors.Is(err, kubestore.ErrConflict) {
		t.Fatalf("Save over a newer Secret: %v, want ErrConflict", err)
	}
	if doc, _ := a.Load(ctx); string(doc) != `{"v":2}` {
		t.Errorf("after the refused Save the Secret holds %q", doc)
	}
	c, _ := kubestore.New(kube.Client.CoreV1(), ns, "kzero-ca")
	if err := c.Save(ctx, []byte(`{"v":"blind"}`)); !errors.Is(err, kubestore.ErrConflict) {
		t.Errorf("Save without Load over an existing Secret: %v, want ErrConflict", err)
	}

	// A CA over the store keeps its state across restarts.
	d, _ := kubestore.New(kube.Client.CoreV1(), ns, "kzero-ca-2")
	ca1, err := ca.New(ctx, ca.Config{TrustDomain: trustDomain, Store: d})
	if err != nil {
		t.Fatalf("new CA: %v", err)
	}
	e, _ := kubestore.New(kube.Client.CoreV1(), ns, "kzero-ca-2")
	ca2, err := ca.New(ctx, ca.Config{TrustDomain: trustDomain, Store: e})
	if err != nil {
		t.Fatalf("CA reloaded from the Secret: %v", err)
	}
	if !ca1.Bundle().Equal(ca2.Bundle()) {
		t.Error("the reloaded CA has another bundle")
	}

	// A Secret that does not hold the document is refused, not replaced.
	if _, err := kube.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "other"}, Data: map[string][]byte{"x": []byte("y")}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f, _ := kubestore.New(kube.Client.CoreV1(), ns, "other")
	_, err = f.Load(ctx)
	want := fmt.Sprintf(`kubestore: Secret %s/other has no data key "ca.json": it was not written by kzero, or was emptied; restore it from a backup, or delete it to start a new trust domain root`, ns)
	if err == nil || err.Error() != want || errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load of a foreign Secret: %v, want %s", err, want)
	}
}
