package admission_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	corev1 "k8s.io/api/core/v1"

	"kzero.dev/kzero/internal/admission"
)

// FuzzHandler: any body gets an answer from either webhook, never a
// panic.
func FuzzHandler(f *testing.F) {
	enrolled := func(context.Context, string) (*corev1.Namespace, error) { return ns("shop", true), nil }
	handlers := []http.Handler{&admission.Handler{Namespaces: enrolled}, &admission.ValidatingHandler{Namespaces: enrolled}}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, h := range handlers {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/pods", bytes.NewReader(body)))
			if rec.Code != http.StatusOK && rec.Code != http.StatusBadRequest {
				t.Fatalf("%T: status %d", h, rec.Code)
			}
		}
	})
}

// FuzzMutate: for any pod, Mutate's patch applies to the pod as the API
// server serializes it, and the patched pod needs no further patch.
func FuzzMutate(f *testing.F) {
	for _, seed := range []string{
		`{"spec":{"containers":[{"name":"c","image":"i"}]}}`,
		`{"spec":{"volumes":[],"initContainers":[{"name":"i","env":[],"volumeMounts":[]}],"containers":[{"name":"c","env":null}]}}`,
		`{"spec":{"volumes":[{"name":"kzero-identity"}],"containers":[{"name":"c","env":[{"name":"SPIFFE_ENDPOINT_SOCKET","value":"unix:///x"}]}]}}`,
		`{"metadata":{"annotations":{"kzero.dev/workload-api":"false"}},"spec":{"containers":[{"name":"c","volumeMounts":[{"name":"v","mountPath":"/run/kzero/agent"}]}]}}`,
		`{"metadata":{"annotations":{"kzero.dev/inject":"false"}},"spec":{"containers":[{"name":"c"}]}}`,
		`{"spec":{"volumes":[{"name":"kzero-workload-api"}],"containers":[{"name":"c"},{"name":"d","volumeMounts":[{"name":"x","mountPath":"/var/run/secrets/kzero.dev/identity"}]}]}}`,
	} {
		f.Add([]byte(seed))
	}
	enrolled := ns("shop", true)
	f.Fuzz(func(t *testing.T, raw []byte) {
		var p corev1.Pod
		if err := json.Unmarshal(raw, &p); err != nil {
			return
		}
		doc, err := json.Marshal(&p) // what the API server sends
		if err != nil {
			return
		}
		res, err := admission.Mutate(&p, enrolled, admission.Config{})
		if err != nil {
			t.Fatalf("Mutate: %v", err)
		}
		if after, _ := json.Marshal(&p); !bytes.Equal(after, doc) {
			t.Fatalf("Mutate modified its pod")
		}
		if res.Patch == nil {
			return
		}
		jp, err := jsonpatch.DecodePatch(res.Patch)
		if err != nil {
			t.Fatalf("the patch does not decode: %v\n%s", err, res.Patch)
		}
		out, err := jp.Apply(doc)
		if err != nil {
			t.Fatalf("the patch does not apply: %v\npod %s\npatch %s", err, doc, res.Patch)
		}
		var patched corev1.Pod
		if err := json.Unmarshal(out, &patched); err != nil {
			t.Fatalf("the patched pod does not decode: %v\n%s", err, out)
		}
		again, err := admission.Mutate(&patched, enrolled, admission.Config{})
		if err != nil || again.Patch != nil {
			t.Fatalf("the patched pod is patched again: %s (%q, %v)\npod %s", again.Patch, again.Reason, err, out)
		}
	})
}
