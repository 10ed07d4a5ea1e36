//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	admissionregv1 "k8s.io/api/admissionregistration/v1"
	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"kzero.dev/kzero/internal/admission"
	"kzero.dev/kzero/internal/audit"
	"kzero.dev/kzero/internal/authority"
	"kzero.dev/kzero/internal/install"
	"kzero.dev/kzero/internal/kubestore"
	"kzero.dev/kzero/internal/leader"
	"kzero.dev/kzero/test/cluster"
)

// nodeIP is the harness's node address (docs/cluster.md): kube-apiserver,
// on the host, reaches the webhooks the test serves there.
const nodeIP = "10.244.0.1"

// replica is one authority replica run in this process.
type replica struct {
	r    *authority.Replica
	out  *syncBuffer
	url  string
	stop context.CancelFunc
	done chan error
}

// startReplica runs an authority replica named id, as the service account
// of storeNS, its webhook listening on a free port of the node IP.
// crash=true makes stop keep the Lease, as a killed process would.
func startReplica(t *testing.T, client kubernetes.Interface, storeNS, id string, crash bool) *replica {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(nodeIP, "0"))
	if err != nil {
		t.Fatal(err)
	}
	store, err := kubestore.New(client.CoreV1(), storeNS, "kzero-ca")
	if err != nil {
		t.Fatal(err)
	}
	out := &syncBuffer{}
	rec, err := audit.NewRecorder(audit.Config{Component: audit.ComponentAuthority, Out: out})
	if err != nil {
		t.Fatal(err)
	}
	r, err := authority.NewReplica(authority.ReplicaConfig{
		Client: client, TrustDomain: trustDomain, Store: store, Audit: rec,
		Log: slog.New(slog.NewTextHandler(tlog{t}, nil)).With("replica", id),
		Election: leader.Config{Namespace: storeNS, Identity: id, KeepOnCancel: crash,
			LeaseDuration: 4 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: time.Second},
		Webhook: authority.WebhookConfig{Listener: ln, Service: authority.DefaultWebhookService, Namespace: storeNS,
			IPs: []netip.Addr{netip.MustParseAddr(nodeIP)}},
		WebhookConfig: authority.DefaultWebhookConfig,
		Reload:        2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rp := &replica{r: r, out: out, url: "https://" + ln.Addr().String() + authority.MutatePodsPath, stop: cancel, done: make(chan error, 1)}
	go func() { rp.done <- r.Run(ctx) }()
	t.Cleanup(func() { rp.halt(t) })
	return rp
}

// halt stops the replica and waits for it; a second call does nothing.
func (rp *replica) halt(t *testing.T) {
	t.Helper()
	if rp.done == nil {
		return
	}
	rp.stop()
	if err := <-rp.done; !errors.Is(err, context.Canceled) {
		t.Errorf("Replica.Run returned %v, want context.Canceled", err)
	}
	rp.done = nil
}

// podIdentityWebhook is the MutatingWebhookConfiguration kzero install
// makes, but calling url rather than the Service, and with no caBundle:
// the leader sets it.
func podIdentityWebhook(url string) *admissionregv1.MutatingWebhookConfiguration {
	w := install.Webhook("kzero-system")
	w.Webhooks[0].ClientConfig = admissionregv1.WebhookClientConfig{URL: &url}
	return w
}

// hasIdentityVolume reports whether the webhook gave the pod its volume.
func hasIdentityVolume(p *corev1.Pod) bool {
	for _, v := range p.Spec.Volumes {
		if v.Name == admission.VolumeName {
			return true
		}
	}
	return false
}

// admissionEvent waits for the audit event of the webhook's verdict on
// the pod named name in ns.
func admissionEvent(t *testing.T, out *syncBuffer, ns, name string) audit.Event {
	t.Helper()
	return waitEvent(t, out, fmt.Sprintf("admission event for %s/%s", ns, name), func(e audit.Event) bool {
		return e.Kind == audit.KindAdmission && e.Admission != nil && e.Admission.Namespace == ns && e.Admission.Name == name
	})
}

// TestPodIdentityWebhook is issue 5's acceptance: a pod of an enrolled
// namespace whose manifest says nothing of kzero gets an X.509-SVID that
// verifies against the projected trust bundle; pods of other namespaces
// and pods that opt out get nothing; and when the leader dies, the other
// replica signs.
func TestPodIdentityWebhook(t *testing.T) {
	if err := loadPodcert(); err != nil {
		t.Fatal(err)
	}
	if err := cluster.CheckContained(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	storeNS := namespace(t)
	client := authorityClient(t, storeNS)
	a := startReplica(t, client, storeNS, "authority-a", true)
	hooks := kube.Client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	if _, err := hooks.Create(ctx, podIdentityWebhook(a.url), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create the webhook configuration: %v", err)
	}
	t.Cleanup(func() {
		_ = hooks.Delete(context.Background(), authority.DefaultWebhookConfig, metav1.DeleteOptions{})
		_ = kube.Client.CertificatesV1().ClusterTrustBundles().Delete(context.Background(), authority.BundleName("cluster.local"), metav1.DeleteOptions{})
	})
	// The leader sets the caBundle; until then kube-apiserver cannot trust
	// the webhook.
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		h, err := hooks.Get(ctx, authority.DefaultWebhookConfig, metav1.GetOptions{})
		return err == nil && len(h.Webhooks[0].ClientConfig.CABundle) > 0, nil
	})
	if err != nil {
		t.Fatalf("the leader did not set the webhook's caBundle: %v", err)
	}
	if !a.r.Leading() {
		t.Fatal("the only replica does not lead")
	}

	enrolled := enrolledNamespace(t)
	if _, err := kube.Client.CoreV1().ServiceAccounts(enrolled).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "web"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	t.Run("an enrolled pod that says nothing of kzero gets its SVID", func(t *testing.T) {
		pod := testPod("web")
		pod.Spec.ServiceAccountName = "web"
		pod.Spec.Containers[0].Image = podcertImage
		createPod(t, enrolled, pod)
		got := waitPod(t, enrolled, "web", time.Minute, ready)
		if !hasIdentityVolume(got) {
			t.Fatalf("the pod has no %s volume: %+v", admission.VolumeName, got.Spec.Volumes)
		}
		wantID := fmt.Sprintf("spiffe://cluster.local/ns/%s/sa/web", enrolled)
		log := podLog(t, enrolled, "web")
		if !strings.Contains(log, "spiffe-id: "+wantID+"\n") || !strings.Contains(log, "verified: "+wantID+" against bundle.pem") {
			t.Errorf("pod log = %q, want its SVID %s verified against bundle.pem", log, wantID)
		}
		e := admissionEvent(t, a.out, enrolled, "web")
		if e.Outcome != audit.OutcomeAllow || !e.Admission.Patched || e.Admission.Operation != "CREATE" || e.Admission.Resource != "v1/pods" {
			t.Errorf("admission event %+v %+v, want an allowed, patched pod creation", e, e.Admission)
		}
	})

	t.Run("a pod of a namespace not enrolled gets nothing", func(t *testing.T) {
		other := namespace(t)
		createPod(t, other, testPod("plain", "serve", ":8080"))
		got := waitPod(t, other, "plain", time.Minute, ready)
		if hasIdentityVolume(got) {
			t.Errorf("the pod got the identity volume: %+v", got.Spec.Volumes)
		}
	})

	t.Run("a pod that opts out gets nothing", func(t *testing.T) {
		pod := testPod("optout", "serve", ":8080")
		pod.Annotations = map[string]string{admission.InjectAnnotation: "false"}
		createPod(t, enrolled, pod)
		got := waitPod(t, enrolled, "optout", time.Minute, ready)
		if hasIdentityVolume(got) {
			t.Errorf("the pod got the identity volume: %+v", got.Spec.Volumes)
		}
		e := admissionEvent(t, a.out, enrolled, "optout")
		if e.Outcome != audit.OutcomeAllow || e.Admission.Patched || !strings.Contains(e.Reason, "opts out") {
			t.Errorf("admission event %+v %+v, want allowed, not patched, opted out", e, e.Admission)
		}
	})

	t.Run("when the leader dies the other replica signs", func(t *testing.T) {
		b := startReplica(t, client, storeNS, "authority-b", false)
		// Give b a few tries at the Lease (one every 2 s) while a holds it.
		if err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
			return b.r.Leading(), nil
		}); err == nil {
			t.Fatal("b leads while a holds the Lease")
		}
		died := time.Now()
		a.halt(t) // a crash: the Lease stays held until it expires
		// A Service would send the webhook's calls to the replica left.
		h, err := hooks.Get(t.Context(), authority.DefaultWebhookConfig, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		h.Webhooks[0].ClientConfig.URL = &b.url
		if _, err := hooks.Update(t.Context(), h, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 20*time.Second, true, func(context.Context) (bool, error) {
			return b.r.Leading(), nil
		}); err != nil {
			t.Fatalf("b did not take over: %v", err)
		}
		t.Logf("b leads %s after a died holding the Lease", time.Since(died).Round(100*time.Millisecond))

		pod := testPod("after")
		pod.Spec.ServiceAccountName = "web"
		pod.Spec.Containers[0].Image = podcertImage
		createPod(t, enrolled, pod)
		waitPod(t, enrolled, "after", time.Minute, ready)
		r, cond := closedRequest(t, enrolled, forPod("after"))
		if cond.Type != certv1.PodCertificateRequestConditionTypeIssued {
			t.Fatalf("condition %s %s: %s, want Issued", cond.Type, cond.Reason, cond.Message)
		}
		auditEvent(t, b.out, requesterOf(r), audit.OutcomeSuccess)
		for _, e := range a.out.events(t) {
			if e.Issuance != nil && e.Issuance.Requester == requesterOf(r) {
				t.Errorf("the dead leader a audited %+v", e)
			}
		}
		admissionEvent(t, b.out, enrolled, "after")
	})
}
