//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"

	"kzero.dev/kzero/internal/audit"
	"kzero.dev/kzero/internal/authority"
)

// TestPodAdmission is issue 13's acceptance for admission: in an enrolled
// namespace a pod with a hostPath volume is refused with a message that
// says what to do, the same pod elsewhere is admitted, the verdicts come
// from reviews kube-apiserver sent (its webhook client certificate), and
// a review forged by a pod is refused unread and audited as
// unauthenticated.
func TestPodAdmission(t *testing.T) {
	if err := kube.CheckContained(t.Context()); err != nil {
		t.Fatal(err)
	}
	_, _, svc, a := webhookSetup(t)
	enrolled := enrolledNamespace(t)
	plain := namespace(t)
	hostPathPod := func() *corev1.Pod {
		p := testPod("debug", "cat", "/host/agent.sock")
		p.Spec.Volumes = []corev1.Volume{{Name: "host", VolumeSource: corev1.VolumeSource{
			HostPath: &corev1.HostPathVolumeSource{Path: "/run/kzero/agent"}}}}
		p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "host", MountPath: "/host"}}
		return p
	}
	dryRun := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}

	t.Run("a hostPath pod in an enrolled namespace is refused, and told why", func(t *testing.T) {
		// kube-apiserver matches webhooks against its own informers' copy
		// of the webhook configurations and of the namespaces' labels,
		// which may lag the writes just made by a moment (seen in CI: a
		// pod admitted right after the namespace was labeled): ask until
		// the webhook is called, for a few seconds at most.
		var err error
		_ = wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
			_, err = kube.Client.CoreV1().Pods(enrolled).Create(ctx, hostPathPod(), dryRun)
			return err != nil, nil
		})
		want := fmt.Sprintf(`admission webhook "pod-admission.kzero.dev" denied the request: pod %s/debug mounts the node's filesystem (hostPath /run/kzero/agent as volume "host"): enrolled namespaces refuse hostPath volumes`, enrolled)
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "run the pod in a namespace that is not enrolled") {
			t.Fatalf("create: %v\nwant Forbidden: %s...", err, want)
		}
		t.Logf("refused: %v", err)
		e := waitEvent(t, a.out, "the refusal", func(e audit.Event) bool {
			return e.Kind == audit.KindAdmission && e.Admission.Namespace == enrolled && e.Admission.Name == "debug" && e.Outcome == audit.OutcomeDeny
		})
		if p := e.Admission; p.Unauthenticated || p.Caller != apiserverWebhookClient || !p.Address.IsValid() {
			t.Errorf("the refusal's event %+v: want it from kube-apiserver, authenticated as %s", p, apiserverWebhookClient)
		}
	})

	t.Run("the same pod in a namespace not enrolled is admitted", func(t *testing.T) {
		if _, err := kube.Client.CoreV1().Pods(plain).Create(t.Context(), hostPathPod(), dryRun); err != nil {
			t.Fatalf("create: %v", err)
		}
	})

	t.Run("a review forged by a pod is refused unread", func(t *testing.T) {
		raw, err := json.Marshal(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "forged", Namespace: enrolled},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "i"}}}})
		if err != nil {
			t.Fatal(err)
		}
		review, err := json.Marshal(admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
			Request: &admissionv1.AdmissionRequest{UID: "forged-uid", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
				Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
				Operation: admissionv1.Create, Namespace: enrolled, Name: "forged", Object: runtime.RawExtension{Raw: raw}},
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, path := range []string{authority.MutatePodsPath, authority.ValidatePodsPath} {
			name := "forger" + strings.ReplaceAll(path, "/", "-")
			createPod(t, plain, testPod(name, "post", svc.url(path), string(review)))
			waitPod(t, plain, name, 2*time.Minute, succeeded)
			log := podLog(t, plain, name)
			if !strings.HasPrefix(log, "status: 401\nwebhook: no TLS client certificate") {
				t.Errorf("the forged review to %s: %q, want 401: no TLS client certificate", path, log)
			}
			e := waitEvent(t, a.out, "the refusal of the forged review to "+path, func(e audit.Event) bool {
				return e.Kind == audit.KindAdmission && e.Admission.Unauthenticated && strings.Contains(e.Reason, "sent to "+path+" from ")
			})
			if p := e.Admission; e.Outcome != audit.OutcomeDeny || p.UID != "" || p.Name != "" || p.Caller != "" {
				t.Errorf("the forged review's event %s %+v: want an unread, unauthenticated refusal", e.Outcome, p)
			}
		}
		for _, e := range a.out.events(t) {
			if e.Kind == audit.KindAdmission && (e.Admission.UID == "forged-uid" || e.Admission.Name == "forged") {
				t.Errorf("the forged review became an event of its own: %+v", e.Admission)
			}
		}
	})
}
