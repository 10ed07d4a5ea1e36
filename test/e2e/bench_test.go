//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"kzero.dev/kzero/internal/admission"
	"kzero.dev/kzero/internal/authority"
)

// Issue 5's benchmarks run against the harness's real cluster (node mode):
//
//	go test -tags e2e -run '^$' -bench PCRSigning -benchtime 1000x ./test/e2e/
//	go test -tags e2e -run '^$' -bench PodIdentityMount -benchtime 50x ./test/e2e/
//
// They are not part of make test.

// BenchmarkPCRSigning measures how many PodCertificateRequests the
// authority answers a second through the real API server. b.N requests
// for 10 pods are made first, with kubelet's own credentials and the
// authority stopped; then the authority starts, and the rate is taken from
// the first Issued to the last, as a watch sees them. (The 10 pods' own
// requests, from kubelet, are answered in the same run.)
func BenchmarkPCRSigning(b *testing.B) {
	if err := loadPodcert(); err != nil {
		b.Fatal(err)
	}
	ctx := b.Context()
	ns := enrolledWithSA(b, "web")
	node, err := kube.Client.CoreV1().Nodes().Get(ctx, kube.Nodes[0].Name, metav1.GetOptions{})
	if err != nil {
		b.Fatal(err)
	}
	sa, err := kube.Client.CoreV1().ServiceAccounts(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		b.Fatal(err)
	}
	var pods []*corev1.Pod
	for i := range 10 {
		// NodeRestriction lets a node ask only for pods that mount a
		// podCertificate volume of the signer.
		p := identityPod(fmt.Sprintf("signed-%d", i), "web")
		p.Spec.NodeName = node.Name // the node whose credentials ask
		createPod(b, ns, p)
		pods = append(pods, waitPod(b, ns, p.Name, time.Minute, func(p *corev1.Pod) (bool, error) { return p.Spec.NodeName != "", nil }))
	}
	nodeClient := nodeClientset(b, node.Name)
	reqs := make(chan int)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for i := range reqs {
				p := pods[i%len(pods)]
				r := &certv1.PodCertificateRequest{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bench-%05d", i)},
					Spec: certv1.PodCertificateRequestSpec{
						SignerName: authority.SignerName, PodName: p.Name, PodUID: p.UID,
						ServiceAccountName: "web", ServiceAccountUID: sa.UID,
						NodeName: types.NodeName(node.Name), NodeUID: node.UID,
						StubPKCS10Request: stubCSR(b),
					},
				}
				if _, err := nodeClient.CertificatesV1().PodCertificateRequests(ns).Create(ctx, r, metav1.CreateOptions{}); err != nil {
					b.Errorf("create %s as the node: %v", r.Name, err)
				}
			}
		})
	}
	for i := range b.N {
		reqs <- i
	}
	close(reqs)
	wg.Wait()
	if b.Failed() {
		return
	}

	w, err := kube.Client.CertificatesV1().PodCertificateRequests(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Stop()
	runAuthority(b)
	issued := map[string]bool{}
	var first time.Time
	timeout := time.After(time.Duration(b.N)*50*time.Millisecond + time.Minute)
	for len(issued) < b.N {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				b.Fatal("the watch ended")
			}
			r, ok := ev.Object.(*certv1.PodCertificateRequest)
			if !ok || !strings.HasPrefix(r.Name, "bench-") || r.Status.CertificateChain == "" || issued[r.Name] {
				continue
			}
			if len(issued) == 0 {
				first = time.Now()
				b.ResetTimer()
			}
			issued[r.Name] = true
		case <-timeout:
			b.Fatalf("%d of %d requests issued", len(issued), b.N)
		}
	}
	b.StopTimer()
	if b.N > 1 {
		b.ReportMetric(float64(b.N-1)/time.Since(first).Seconds(), "signed/s")
	}
}

// BenchmarkPodIdentityMount measures the time from a pod's creation to its
// identity mounted: from just before the create call to the modification
// time of the credential bundle kubelet writes into the pod's volume. The
// pod goes through all of it: the webhook adds the volume, the scheduler
// binds it, kubelet makes a key and a PodCertificateRequest, the authority
// signs, kubelet writes the files. One pod at a time.
func BenchmarkPodIdentityMount(b *testing.B) { benchMount(b, 1) }

// BenchmarkPodIdentityMountBurst is BenchmarkPodIdentityMount with all
// b.N pods created at once, 10 create calls at a time.
func BenchmarkPodIdentityMountBurst(b *testing.B) { benchMount(b, 10) }

func benchMount(b *testing.B, parallel int) {
	if err := loadPodcert(); err != nil {
		b.Fatal(err)
	}
	webhookSetupWithAgent(b)
	ns := enrolledWithSA(b, "web")
	signing := watchSigning(b, ns)
	lat := make([]time.Duration, b.N)
	names := make(chan int)
	var wg sync.WaitGroup
	b.ResetTimer()
	for range parallel {
		wg.Go(func() {
			for i := range names {
				lat[i] = mountTime(b, ns, fmt.Sprintf("mount-%03d", i))
			}
		})
	}
	for i := range b.N {
		names <- i
	}
	close(names)
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(percentile(lat, 0.5), "p50-ms")
	b.ReportMetric(percentile(lat, 0.99), "p99-ms")
	b.ReportMetric(percentile(lat, 1), "max-ms")
	sign := signing()
	if len(sign) != b.N {
		b.Errorf("%d requests seen answered, want %d", len(sign), b.N)
	}
	b.ReportMetric(percentile(sign, 0.5), "sign-p50-ms")
	b.ReportMetric(percentile(sign, 0.99), "sign-p99-ms")
}

// percentile is the p-th of ds, in milliseconds; it sorts ds.
func percentile(ds []time.Duration, p float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return float64(ds[int(p*float64(len(ds)-1))].Microseconds()) / 1000
}

// watchSigning watches the PodCertificateRequests of ns and returns a
// function that stops and returns, for each request answered, the time
// from the watch seeing it made to the watch seeing it issued: kzero's
// share of the time to mount, plus the watch's own delay, twice.
func watchSigning(b *testing.B, ns string) func() []time.Duration {
	w, err := kube.Client.CertificatesV1().PodCertificateRequests(ns).Watch(b.Context(), metav1.ListOptions{})
	if err != nil {
		b.Fatal(err)
	}
	var out []time.Duration
	done := make(chan struct{})
	go func() {
		defer close(done)
		seen := map[string]time.Time{}
		for ev := range w.ResultChan() {
			r, ok := ev.Object.(*certv1.PodCertificateRequest)
			if !ok {
				continue
			}
			t0, ok := seen[r.Name]
			switch {
			case !ok:
				seen[r.Name] = time.Now()
			case r.Status.CertificateChain != "" && !t0.IsZero():
				out = append(out, time.Since(t0))
				seen[r.Name] = time.Time{}
			}
		}
	}()
	return func() []time.Duration {
		w.Stop()
		<-done
		return out
	}
}

// mountTime creates a web pod named name and returns how long after the
// create call began kubelet wrote its identity.
func mountTime(b *testing.B, ns, name string) time.Duration {
	start := time.Now()
	p, err := kube.Client.CoreV1().Pods(ns).Create(b.Context(), webPod(name), metav1.CreateOptions{})
	if err != nil {
		b.Errorf("create pod %s: %v", name, err)
		return 0
	}
	var file string
	var written time.Time
	err = wait.PollUntilContextTimeout(b.Context(), 5*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		if file == "" {
			// The pod's node, once the scheduler has picked it.
			if p, err = kube.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{}); err != nil || p.Spec.NodeName == "" {
				return false, nil
			}
			dir, err := kube.ProjectedVolumeDir(p.Spec.NodeName, string(p.UID), admission.VolumeName)
			if err != nil {
				return false, err
			}
			file = filepath.Join(dir, "credentialbundle.pem")
		}
		fi, err := os.Stat(file)
		if err != nil {
			return false, nil
		}
		written = fi.ModTime()
		return true, nil
	})
	if err != nil {
		b.Errorf("pod %s: no identity at %s: %v", name, file, err)
		return 0
	}
	return written.Sub(start)
}
