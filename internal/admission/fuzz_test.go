package admission_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"kzero.dev/kzero/internal/admission"
)

// FuzzHandler: any body gets an answer, never a panic.
func FuzzHandler(f *testing.F) {
	h := &admission.Handler{Namespaces: func(context.Context, string) (*corev1.Namespace, error) { return ns("shop", true), nil }}
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/mutate", bytes.NewReader(body)))
		if rec.Code != http.StatusOK && rec.Code != http.StatusBadRequest {
			t.Fatalf("status %d", rec.Code)
		}
	})
}
