package admission_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"kzero.dev/kzero/internal/admission"
)

func ns(name string, enrolled bool) *corev1.Namespace {
	n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}}}
	if enrolled {
		n.Labels["kzero.dev/enrolled"] = "true"
	}
	return n
}

func pod(mutate func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"}, Spec: corev1.PodSpec{
		InitContainers: []corev1.Container{{Name: "init", Image: "busybox"}},
		Containers: []corev1.Container{
			{Name: "app", Image: "app", VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}},
			{Name: "sidecar-free", Image: "log"},
		},
		Volumes: []corev1.Volume{{Name: "data"}},
	}}
	if mutate != nil {
		mutate(p)
	}
	return p
}

// apply applies a JSON patch for real and returns the patched pod.
func apply(t *testing.T, p *corev1.Pod, patch []byte) *corev1.Pod {
	t.Helper()
	doc, _ := json.Marshal(p)
	jp, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		t.Fatalf("the patch does not decode: %v\n%s", err, patch)
	}
	out, err := jp.Apply(doc)
	if err != nil {
		t.Fatalf("the patch does not apply: %v\n%s", err, patch)
	}
	var got corev1.Pod
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	return &got
}

func TestMutate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		pod    *corev1.Pod
		ns     *corev1.Namespace
		inject bool
		reason string
	}{
		{"enrolled", pod(nil), ns("shop", true), true, "identity volume added: namespace shop is enrolled"},
		{"no volumes or mounts yet", pod(func(p *corev1.Pod) {
			p.Spec.Volumes, p.Spec.InitContainers = nil, nil
			p.Spec.Containers[0].VolumeMounts = nil
		}), ns("shop", true), true, "identity volume added: namespace shop is enrolled"},
		{"not enrolled", pod(nil), ns("shop", false), false, "namespace shop is not enrolled"},
		{"kube-system even when labelled", pod(nil), ns("kube-system", true), false, "kube-system is never enrolled"},
		{"opted out", pod(func(p *corev1.Pod) { p.Annotations = map[string]string{"kzero.dev/inject": "false"} }), ns("shop", true), false,
			`the pod opts out with kzero.dev/inject: "false"`},
		{"already has it", pod(func(p *corev1.Pod) { p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "kzero-identity"}) }), ns("shop", true), false,
			"the pod already has the identity volume"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := admission.Mutate(tc.pod, tc.ns, admission.Config{})
			if err != nil {
				t.Fatal(err)
			}
			if res.Reason != tc.reason || (res.Patch != nil) != tc.inject {
				t.Fatalf("Mutate = %q, patch %v; want %q, patch %v", res.Reason, res.Patch != nil, tc.reason, tc.inject)
			}
			if !tc.inject {
				return
			}
			got := apply(t, tc.pod, res.Patch)
			vol := got.Spec.Volumes[len(got.Spec.Volumes)-1]
			if vol.Name != "kzero-identity" || vol.Projected == nil || len(vol.Projected.Sources) != 2 {
				t.Fatalf("volume %+v", vol)
			}
			pc, ctb := vol.Projected.Sources[0].PodCertificate, vol.Projected.Sources[1].ClusterTrustBundle
			if pc == nil || pc.SignerName != "kzero.dev/identity" || pc.KeyType != "ECDSAP256" || pc.CredentialBundlePath != "credentialbundle.pem" {
				t.Errorf("podCertificate source %+v", pc)
			}
			if ctb == nil || *ctb.SignerName != "kzero.dev/identity" || ctb.LabelSelector == nil || ctb.Path != "bundle.pem" {
				t.Errorf("clusterTrustBundle source %+v", ctb)
			}
			for _, c := range append(got.Spec.InitContainers, got.Spec.Containers...) {
				last := c.VolumeMounts[len(c.VolumeMounts)-1]
				if last.Name != "kzero-identity" || last.MountPath != "/var/run/secrets/kzero.dev/identity" || !last.ReadOnly {
					t.Errorf("container %s: mounts %+v", c.Name, c.VolumeMounts)
				}
			}
		})
	}
}

func TestHandler(t *testing.T) {
	namespaces := map[string]*corev1.Namespace{"shop": ns("shop", true)}
	var decided []string
	h := &admission.Handler{
		Namespaces: func(_ context.Context, name string) (*corev1.Namespace, error) {
			if n, ok := namespaces[name]; ok {
				return n, nil
			}
			return nil, errors.New("not found")
		},
		Decided: func(_ *admissionv1.AdmissionRequest, res admission.Result, err error) {
			decided = append(decided, res.Reason)
		},
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	review := func(namespace string) *admissionv1.AdmissionResponse {
		raw, _ := json.Marshal(pod(nil))
		body, _ := json.Marshal(admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
			Request: &admissionv1.AdmissionRequest{UID: "u-1", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
				Operation: admissionv1.Create, Namespace: namespace, Object: runtime.RawExtension{Raw: raw}},
		})
		resp, err := http.Post(srv.URL, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out admissionv1.AdmissionReview
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatal(err)
		}
		return out.Response
	}
	if r := review("shop"); !r.Allowed || r.UID != "u-1" || r.PatchType == nil || *r.PatchType != admissionv1.PatchTypeJSONPatch || len(r.Patch) == 0 {
		t.Errorf("enrolled pod: %+v", r)
	}
	if r := review("gone"); r.Allowed || r.Result == nil || r.Result.Message != "admission: namespace gone: not found" {
		t.Errorf("namespace lookup failure: %+v", r)
	}
	if len(decided) != 2 {
		t.Errorf("decisions reported: %q", decided)
	}
	if resp, err := http.Get(srv.URL); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %v %v", resp.StatusCode, err)
	}
}
