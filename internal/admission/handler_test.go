package admission_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"kzero.dev/kzero/internal/admission"
)

// reviewer posts AdmissionReviews of pods to a webhook served by h.
type reviewer struct {
	t   *testing.T
	url string
}

func newReviewer(t *testing.T, h http.Handler) *reviewer {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &reviewer{t: t, url: srv.URL}
}

// review sends p's creation in namespace and returns the response.
func (r *reviewer) review(namespace string, p *corev1.Pod) *admissionv1.AdmissionResponse {
	r.t.Helper()
	raw, _ := json.Marshal(p)
	body, _ := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: "u-1", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Operation: admissionv1.Create, Namespace: namespace, Object: runtime.RawExtension{Raw: raw}},
	})
	resp, err := http.Post(r.url, "application/json", bytes.NewReader(body))
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		r.t.Fatal(err)
	}
	return out.Response
}

// namespaces finds shop (enrolled) and plain; any other is an error.
func namespaces(_ context.Context, name string) (*corev1.Namespace, error) {
	switch name {
	case "shop":
		return ns("shop", true), nil
	case "plain":
		return ns("plain", false), nil
	}
	return nil, errors.New("not found")
}

func TestHandler(t *testing.T) {
	var decided []string
	h := &admission.Handler{
		Namespaces: namespaces,
		Decided: func(_ context.Context, _ *admissionv1.AdmissionRequest, res admission.Result, err error) {
			decided = append(decided, res.Reason)
		},
	}
	rv := newReviewer(t, h)
	if r := rv.review("shop", pod(nil)); !r.Allowed || r.UID != "u-1" || r.PatchType == nil || *r.PatchType != admissionv1.PatchTypeJSONPatch || len(r.Patch) == 0 {
		t.Errorf("enrolled pod: %+v", r)
	}
	if r := rv.review("gone", pod(nil)); r.Allowed || r.Result == nil || r.Result.Message != "admission: namespace gone: not found" {
		t.Errorf("namespace lookup failure: %+v", r)
	}
	if len(decided) != 2 {
		t.Errorf("decisions reported: %q", decided)
	}
	if resp, err := http.Get(rv.url); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %v %v", resp.StatusCode, err)
	}
}

// TestValidatingHandler: a pod with a hostPath volume in an enrolled
// namespace is refused (403) with Validate's reason; elsewhere it is
// allowed unchanged, and a namespace that cannot be read refuses.
func TestValidatingHandler(t *testing.T) {
	var decided []admission.Result
	h := &admission.ValidatingHandler{
		Namespaces: namespaces,
		Decided: func(_ context.Context, _ *admissionv1.AdmissionRequest, res admission.Result, _ error) {
			decided = append(decided, res)
		},
	}
	rv := newReviewer(t, h)
	debug := pod(func(p *corev1.Pod) {
		p.Name = "debug"
		p.Spec.Volumes = []corev1.Volume{{Name: "root", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}}}
	})
	want := `pod shop/debug mounts the node's filesystem (hostPath / as volume "root"): enrolled namespaces refuse hostPath volumes, through which a pod could read other pods' private keys; ` +
		"use an emptyDir, a persistentVolumeClaim, a configMap or a secret volume instead, or run the pod in a namespace that is not enrolled"
	if r := rv.review("shop", debug); r.Allowed || r.Result == nil || r.Result.Code != http.StatusForbidden || r.Result.Message != want || r.Patch != nil {
		t.Errorf("hostPath in an enrolled namespace: %+v\nwant 403 %q", r, want)
	}
	if r := rv.review("plain", debug); !r.Allowed || r.Patch != nil {
		t.Errorf("hostPath in a namespace not enrolled: %+v", r)
	}
	if r := rv.review("shop", pod(nil)); !r.Allowed || r.Patch != nil {
		t.Errorf("a pod without hostPath: %+v", r)
	}
	if r := rv.review("gone", debug); r.Allowed || r.Result == nil || r.Result.Message != "admission: namespace gone: not found" {
		t.Errorf("namespace lookup failure: %+v", r)
	}
	if len(decided) != 4 || !decided[0].Refused || decided[1].Refused {
		t.Errorf("decisions reported: %+v", decided)
	}
}
