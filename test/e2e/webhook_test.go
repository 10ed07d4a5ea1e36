//go:build e2e

package e2e

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	admissionregv1 "k8s.io/api/admissionregistration/v1"
	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"kzero.dev/kzero/api/v1alpha1"
	"kzero.dev/kzero/internal/admission"
	"kzero.dev/kzero/internal/audit"
	"kzero.dev/kzero/internal/authority"
	"kzero.dev/kzero/internal/ca"
	"kzero.dev/kzero/internal/install"
	"kzero.dev/kzero/internal/kubestore"
	"kzero.dev/kzero/internal/leader"
)

// nodeIP is the machine's address on the default cluster's network
// (docs/cluster.md): kube-apiserver, which binds it, reaches the webhooks
// the test serves there, and the nodes' pods reach the agent API there.
// setup checks that the cluster is laid out so.
const nodeIP = "10.244.0.1"

// replica is one authority replica run in this process.
type replica struct {
	r    *authority.Replica
	out  *syncBuffer
	addr string // the webhook's host:port
	stop context.CancelFunc
	done chan error
}

// The replicas of these tests have kubelet refresh their pods'
// certificates as early as the API allows (10 minutes after NotBefore),
// and backdate NotBefore by 4.5 minutes (the API allows 5): so kubelet
// refreshes a certificate 5.5 minutes after it was issued, plus its own
// jitter of up to 5 minutes, rather than after 30 minutes.
const (
	testRefreshAt = 0.001
	testBackdate  = 4*time.Minute + 30*time.Second
)

// startReplica runs an authority replica named id, as the service account
// of storeNS, its webhook listening on a free port of the node IP.
// crash=true makes stop keep the Lease, as a killed process would.
func startReplica(t testing.TB, client kubernetes.Interface, storeNS, id string, crash bool) *replica {
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
		NewCA: func(ctx context.Context, s ca.Store) (*ca.CA, error) {
			return ca.New(ctx, ca.Config{TrustDomain: trustDomain, Store: s, Backdate: testBackdate})
		},
		RefreshAt: testRefreshAt,
		Log:       slog.New(slog.NewTextHandler(tlog{t}, nil)).With("replica", id),
		Election: leader.Config{Namespace: storeNS, Identity: id, KeepOnCancel: crash,
			LeaseDuration: 4 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: time.Second},
		Webhook: authority.WebhookConfig{Listener: ln, Service: authority.DefaultWebhookService, Namespace: storeNS,
			IPs:       []netip.Addr{netip.MustParseAddr(nodeIP)},
			ClientCAs: webhookClientCAs(t), ClientNames: []string{apiserverWebhookClient}},
		WebhookConfig: authority.DefaultWebhookConfig,
		Reload:        2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rp := &replica{r: r, out: out, addr: ln.Addr().String(), stop: cancel, done: make(chan error, 1)}
	go func() { rp.done <- r.Run(ctx) }()
	t.Cleanup(func() { rp.halt(t) })
	return rp
}

// service stands in for the authority's Service, which the harness cannot
// give a ClusterIP that kube-apiserver reaches: a TCP proxy on the node IP
// that sends each connection to the first replica that accepts it.
type service struct {
	ln       net.Listener
	mu       sync.Mutex
	backends []string
}

func newService(t testing.TB) *service {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(nodeIP, "0"))
	if err != nil {
		t.Fatal(err)
	}
	s := &service{ln: ln}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { s.forward(c) })
		}
	})
	return s
}

// add makes the replica listening at addr a backend.
func (s *service) add(addr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.backends = append(s.backends, addr)
}

// url is the URL of the webhook at path through the service.
func (s *service) url(path string) string { return "https://" + s.ln.Addr().String() + path }

func (s *service) forward(c net.Conn) {
	defer c.Close()
	s.mu.Lock()
	backends := append([]string(nil), s.backends...)
	s.mu.Unlock()
	for _, addr := range backends {
		b, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			continue // that replica is gone
		}
		defer b.Close()
		done := make(chan struct{}, 2)
		pipe := func(dst, src net.Conn) {
			_, _ = io.Copy(dst, src)
			if tc, ok := dst.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
			}
			done <- struct{}{}
		}
		go pipe(b, c)
		go pipe(c, b)
		<-done
		<-done
		return
	}
}

// halt stops the replica and waits for it; a second call does nothing.
func (rp *replica) halt(t testing.TB) {
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

// podAdmissionWebhook is the ValidatingWebhookConfiguration kzero install
// makes, calling url, with no caBundle.
func podAdmissionWebhook(url string) *admissionregv1.ValidatingWebhookConfiguration {
	w := install.ValidatingWebhook("kzero-system")
	w.Webhooks[0].ClientConfig = admissionregv1.WebhookClientConfig{URL: &url}
	return w
}

// apiserverWebhookClient is the name in the client certificate the
// harness has kube-apiserver present to admission webhooks.
const apiserverWebhookClient = "kube-apiserver-webhook-client"

// webhookClientCAs is the CA of that certificate (docs/cluster.md).
func webhookClientCAs(t testing.TB) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(filepath.Dir(kube.Kubeconfig), "pki", "webhook-client-ca.crt"))
	if err != nil {
		t.Fatalf("the harness's webhook client CA (make cluster-down cluster-up if the cluster predates it): %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatal("the harness's webhook client CA holds no certificate")
	}
	return pool
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
func admissionEvent(t testing.TB, out *syncBuffer, ns, name string) audit.Event {
	t.Helper()
	return waitEvent(t, out, fmt.Sprintf("admission event for %s/%s", ns, name), func(e audit.Event) bool {
		return e.Kind == audit.KindAdmission && e.Admission != nil && e.Admission.Namespace == ns && e.Admission.Name == name
	})
}

// TestPodIdentityWebhook is issue 5's acceptance: a pod of an enrolled
// namespace whose manifest says nothing of kzero gets an X.509-SVID that
// verifies against the projected trust bundle, and kubelet replaces it
// before it expires with another that verifies too; pods of other
// namespaces and pods that opt out get nothing; and when the leader dies
// in a burst of 100 pod creations, every pod still gets its identity, all
// from the one CA.
func TestPodIdentityWebhook(t *testing.T) {
	if err := loadPodcert(); err != nil {
		t.Fatal(err)
	}
	if err := kube.CheckContained(t.Context()); err != nil {
		t.Fatal(err)
	}
	client, storeNS, svc, a := webhookSetupWithAgent(t)
	enrolled := enrolledWithSA(t, "web")
	wantID := fmt.Sprintf("spiffe://cluster.local/ns/%s/sa/web", enrolled)

	var first *certv1.PodCertificateRequest // web's first certificate
	t.Run("an enrolled pod that says nothing of kzero gets its SVID", func(t *testing.T) {
		createPod(t, enrolled, webPod("web"))
		got := waitPod(t, enrolled, "web", time.Minute, ready)
		if !hasIdentityVolume(got) {
			t.Fatalf("the pod has no %s volume: %+v", admission.VolumeName, got.Spec.Volumes)
		}
		log := podLog(t, enrolled, "web")
		if !strings.Contains(log, "spiffe-id: "+wantID+"\n") || !strings.Contains(log, "verified: "+wantID+" against bundle.pem") {
			t.Errorf("pod log = %q, want its SVID %s verified against bundle.pem", log, wantID)
		}
		e := admissionEvent(t, a.out, enrolled, "web")
		if e.Outcome != audit.OutcomeAllow || !e.Admission.Patched || e.Admission.Operation != "CREATE" || e.Admission.Resource != "v1/pods" {
			t.Errorf("admission event %+v %+v, want an allowed, patched pod creation", e, e.Admission)
		}
		var cond metav1.Condition
		first, cond = closedRequest(t, enrolled, forPod("web"))
		if cond.Type != certv1.PodCertificateRequestConditionTypeIssued {
			t.Fatalf("condition %s %s: %s, want Issued", cond.Type, cond.Reason, cond.Message)
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

	b := startReplica(t, client, storeNS, "authority-b", false)
	svc.add(b.addr)
	t.Run("the leader dies in a burst of 100 pod creations", func(t *testing.T) {
		// a is killed once it has signed 10 of the burst's certificates;
		// the rest are b's.
		// Give b a few tries at the Lease (one every 2 s) while a holds it.
		if err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
			return b.r.Leading(), nil
		}); err == nil {
			t.Fatal("b leads while a holds the Lease")
		}
		before := trustBundle(t)
		burst(t, enrolled, 100, func() {
			// Kill a once it has signed 10 of the burst's certificates.
			if err := wait.PollUntilContextTimeout(t.Context(), 20*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
				return signedBurst(t, a.out, enrolled) >= 10, nil
			}); err != nil {
				t.Errorf("a did not sign 10 of the burst's certificates: %v", err)
			}
			died := time.Now()
			a.halt(t) // a crash: the Lease stays held until it expires
			if err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 20*time.Second, true, func(context.Context) (bool, error) {
				return b.r.Leading(), nil
			}); err != nil {
				t.Errorf("b did not take over: %v", err)
				return
			}
			t.Logf("b leads %s after a died holding the Lease", time.Since(died).Round(100*time.Millisecond))
		})
		after := trustBundle(t)
		if !after.Equal(before) {
			t.Errorf("the trust bundle changed across the failover: %d CAs before, %d after", len(before.X509Authorities()), len(after.X509Authorities()))
		}
		// Every pod has exactly one certificate, issued once, and it
		// verifies against the one bundle; a and b together audited each
		// issuance exactly once.
		issued := map[string]int{}
		for _, e := range append(a.out.events(t), b.out.events(t)...) {
			if e.Kind == audit.KindIssuance && e.Outcome == audit.OutcomeSuccess {
				issued[e.Issuance.Requester]++
			}
		}
		perPod := map[string]int{}
		l, err := kube.Client.CertificatesV1().PodCertificateRequests(enrolled).List(t.Context(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for i := range l.Items {
			r := &l.Items[i]
			if !strings.HasPrefix(r.Spec.PodName, "burst-") {
				continue
			}
			for _, c := range r.Status.Conditions {
				if c.Type != certv1.PodCertificateRequestConditionTypeIssued {
					t.Errorf("%s for pod %s: %s %s: %s", r.Name, r.Spec.PodName, c.Type, c.Reason, c.Message)
				}
			}
			if r.Status.CertificateChain == "" {
				continue
			}
			perPod[r.Spec.PodName]++
			if n := issued[requesterOf(r)]; n != 1 {
				t.Errorf("%s for pod %s: %d issuance events, want 1", r.Name, r.Spec.PodName, n)
			}
			if id, _, err := x509svid.Verify(parseChain(t, r.Status.CertificateChain), after); err != nil || id.String() != wantID {
				t.Errorf("%s for pod %s: verified %q, %v; want %s", r.Name, r.Spec.PodName, id, err, wantID)
			}
		}
		for i := range 100 {
			name := fmt.Sprintf("burst-%03d", i)
			if perPod[name] != 1 {
				t.Errorf("pod %s has %d issued certificates, want 1", name, perPod[name])
			}
		}
		aDid, bDid := signedBurst(t, a.out, enrolled), signedBurst(t, b.out, enrolled)
		t.Logf("a signed %d of the burst's certificates, b %d", aDid, bDid)
		if bDid == 0 {
			t.Error("b signed none of the burst: the leader died too late to test the takeover")
		}
	})

	t.Run("kubelet refreshes the SVID before it expires", func(t *testing.T) {
		if first == nil {
			t.Skip("the pod got no first certificate")
		}
		// kubelet refreshes at beginRefreshAt plus up to 5 minutes of
		// jitter, checking every 1 to 2 minutes.
		deadline := first.Status.BeginRefreshAt.Add(8 * time.Minute)
		t.Logf("beginRefreshAt %s; waiting until %s at most", first.Status.BeginRefreshAt.Format(time.TimeOnly), deadline.Format(time.TimeOnly))
		var next *certv1.PodCertificateRequest
		err := wait.PollUntilContextTimeout(t.Context(), 2*time.Second, time.Until(deadline), true, func(ctx context.Context) (bool, error) {
			l, err := kube.Client.CertificatesV1().PodCertificateRequests(enrolled).List(ctx, metav1.ListOptions{})
			if err != nil {
				return false, nil
			}
			for i := range l.Items {
				r := &l.Items[i]
				if r.Spec.PodName == "web" && r.Name != first.Name && r.Status.CertificateChain != "" {
					next = r
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			t.Fatalf("kubelet did not ask for a new certificate by %s: %v", deadline.Format(time.TimeOnly), err)
		}
		if !next.CreationTimestamp.Time.Before(first.Status.NotAfter.Time) {
			t.Errorf("the refresh was asked for at %s, after the first certificate expired at %s", next.CreationTimestamp, first.Status.NotAfter)
		}
		certs := parseChain(t, next.Status.CertificateChain)
		if id, _, err := x509svid.Verify(certs, trustBundle(t)); err != nil || id.String() != wantID {
			t.Fatalf("the new certificate verified %q, %v; want %s", id, err, wantID)
		}
		auditEvent(t, b.out, requesterOf(next), audit.OutcomeSuccess)
		// The pod sees it: podcert prints each new certificate it finds
		// and verifies it against the projected bundle. kubelet writes
		// the new certificate into the volume at the pod's next sync,
		// which comes every minute plus jitter (--sync-frequency), so
		// allow three.
		serial := certs[0].SerialNumber.Text(16)
		want := "serial: " + serial + "\n"
		err = wait.PollUntilContextTimeout(t.Context(), time.Second, 3*time.Minute, true, func(context.Context) (bool, error) {
			log := podLog(t, enrolled, "web") //nolint:contextcheck // podLog reads with the test's context
			i := strings.Index(log, want)
			return i >= 0 && strings.Contains(log[i:], "verified: "+wantID+" against bundle.pem"), nil
		})
		if err != nil {
			t.Fatalf("the pod did not see the new certificate %s verify: log %q", serial, podLog(t, enrolled, "web"))
		}
		t.Logf("kubelet replaced the certificate issued at %s after %s; the new one (%s) verifies in the pod",
			first.Status.NotBefore.Format(time.TimeOnly), next.CreationTimestamp.Sub(first.CreationTimestamp.Time).Round(time.Second), serial[:8])
	})
}

// webhookSetup runs replica a of the authority as kzero install would,
// behind the stand-in for its Service, with the webhook configuration
// pointing there; it returns once the leader has set the caBundle. The
// store's namespace and the authority's client serve to start more
// replicas.
func webhookSetup(t testing.TB) (kubernetes.Interface, string, *service, *replica) {
	t.Helper()
	ctx := t.Context()
	storeNS := namespace(t)
	client := authorityClient(t, storeNS)
	svc := newService(t)
	a := startReplica(t, client, storeNS, "authority-a", true)
	svc.add(a.addr)
	hooks := kube.Client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	vhooks := kube.Client.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	if _, err := hooks.Create(ctx, podIdentityWebhook(svc.url(authority.MutatePodsPath)), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create the webhook configuration: %v", err)
	}
	if _, err := vhooks.Create(ctx, podAdmissionWebhook(svc.url(authority.ValidatePodsPath)), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create the validating webhook configuration: %v", err)
	}
	t.Cleanup(func() {
		_ = hooks.Delete(context.Background(), authority.DefaultWebhookConfig, metav1.DeleteOptions{})
		_ = vhooks.Delete(context.Background(), authority.DefaultWebhookConfig, metav1.DeleteOptions{})
		_ = kube.Client.CertificatesV1().ClusterTrustBundles().Delete(context.Background(), v1alpha1.TrustBundleName("cluster.local"), metav1.DeleteOptions{})
	})
	// The leader sets the caBundles; until then kube-apiserver cannot
	// trust the webhooks.
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		h, err := hooks.Get(ctx, authority.DefaultWebhookConfig, metav1.GetOptions{})
		if err != nil || len(h.Webhooks[0].ClientConfig.CABundle) == 0 {
			return false, nil
		}
		v, err := vhooks.Get(ctx, authority.DefaultWebhookConfig, metav1.GetOptions{})
		return err == nil && len(v.Webhooks[0].ClientConfig.CABundle) > 0, nil
	})
	if err != nil {
		t.Fatalf("the leader did not set the webhook's caBundle: %v", err)
	}
	if !a.r.Leading() {
		t.Fatal("the only replica does not lead")
	}
	return client, storeNS, svc, a
}

// webhookSetupWithAgent is webhookSetup with the node agent running
// beside the replica, as kzero install ships it: the webhook gives pods of
// enrolled namespaces the agent's CSI volume, which kubelet mounts only
// once the agent has registered its driver.
func webhookSetupWithAgent(t testing.TB) (kubernetes.Interface, string, *service, *replica) {
	t.Helper()
	if err := loadAgentImages(); err != nil {
		t.Fatal(err)
	}
	client, storeNS, svc, a := webhookSetup(t)
	api := startAgentAPI(t, client, storeNS, net.JoinHostPort(nodeIP, "0"), a, &syncBuffer{})
	startAgent(t, storeNS, api.addr)
	return client, storeNS, svc, a
}

// webPod is a podcert pod as service account web that says nothing of
// kzero.
func webPod(name string) *corev1.Pod {
	pod := testPod(name)
	pod.Spec.ServiceAccountName = "web"
	pod.Spec.Containers[0].Image = podcertImage
	return pod
}

// signedBurst counts the burst's certificates an audit stream says were
// issued.
func signedBurst(t testing.TB, out *syncBuffer, ns string) int {
	n := 0
	for _, e := range out.events(t) {
		if e.Kind == audit.KindIssuance && e.Outcome == audit.OutcomeSuccess && strings.HasPrefix(e.Issuance.Requester, "pod/"+ns+"/burst-") {
			n++
		}
	}
	return n
}

// burst creates n web pods burst-000… in ns from 10 goroutines while kill
// runs, and waits until every pod runs, which kubelet allows only once
// the identity is mounted. A creation the webhook refuses (no replica
// answering) is retried, as a ReplicaSet would.
func burst(t *testing.T, ns string, n int, kill func()) {
	t.Helper()
	start := time.Now()
	names := make(chan string)
	var killed sync.WaitGroup
	killed.Go(kill)
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			for name := range names {
				err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
					_, err := kube.Client.CoreV1().Pods(ns).Create(ctx, webPod(name), metav1.CreateOptions{})
					if err != nil {
						t.Logf("create pod %s: %v (retrying)", name, err)
					}
					return err == nil, nil
				})
				if err != nil {
					t.Errorf("create pod %s: %v", name, err)
				}
			}
		})
	}
	for i := range n {
		names <- fmt.Sprintf("burst-%03d", i)
	}
	close(names)
	wg.Wait()
	killed.Wait()
	t.Logf("%d pods created in %s", n, time.Since(start).Round(100*time.Millisecond))
	err := wait.PollUntilContextTimeout(t.Context(), time.Second, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		l, err := kube.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		running := 0
		for i := range l.Items {
			p := &l.Items[i]
			if strings.HasPrefix(p.Name, "burst-") && p.Status.Phase == corev1.PodRunning {
				running++
			}
		}
		return running == n, nil
	})
	if err != nil {
		t.Fatalf("not all %d pods run with their identity: %v", n, err)
	}
	t.Logf("all %d pods run with their identity %s after the first was created", n, time.Since(start).Round(100*time.Millisecond))
}

// trustBundle is the X.509 bundle of the ClusterTrustBundle kzero
// publishes for cluster.local.
func trustBundle(t testing.TB) *x509bundle.Bundle {
	t.Helper()
	ctb, err := kube.Client.CertificatesV1().ClusterTrustBundles().Get(t.Context(), v1alpha1.TrustBundleName("cluster.local"), metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the ClusterTrustBundle: %v", err)
	}
	b, err := x509bundle.Parse(trustDomain, []byte(ctb.Spec.TrustBundle))
	if err != nil {
		t.Fatalf("the ClusterTrustBundle's trustBundle: %v", err)
	}
	return b
}
