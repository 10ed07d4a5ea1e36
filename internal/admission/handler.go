package admission

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// maxReviewBytes bounds an AdmissionReview body (the API server sends a
// whole pod; 3 MiB is over etcd's object limit).
const maxReviewBytes = 3 << 20

// NamespaceGetter finds a namespace, typically from an informer's lister.
type NamespaceGetter func(ctx context.Context, name string) (*corev1.Namespace, error)

// Handler serves the mutating webhook for pod creation. Namespaces is
// required; Config and Log may be zero (Log nil discards).
type Handler struct {
	Namespaces NamespaceGetter
	Config     Config
	Log        *slog.Logger
	// Decided, if set, is told of every decision, for the audit trail.
	Decided func(req *admissionv1.AdmissionRequest, res Result, err error)
}

// ServeHTTP answers one AdmissionReview.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "admission: POST an AdmissionReview", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxReviewBytes+1))
	if err != nil || len(body) > maxReviewBytes {
		http.Error(w, "admission: cannot read the AdmissionReview (or it is over 3 MiB)", http.StatusBadRequest)
		return
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil || review.Request == nil {
		http.Error(w, "admission: the body is not an admission.k8s.io/v1 AdmissionReview with a request", http.StatusBadRequest)
		return
	}
	resp := h.review(r.Context(), review.Request)
	review.Response = resp
	review.Request = nil
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(&review); err != nil && h.Log != nil {
		h.Log.Warn("admission: write response", "err", err)
	}
}

func (h *Handler) review(ctx context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	res, err := h.decide(ctx, req)
	if h.Decided != nil {
		h.Decided(req, res, err)
	}
	if err != nil {
		// Only pods of enrolled namespaces reach the webhook (its
		// namespaceSelector); refusing them is safer than letting a pod
		// start without its identity.
		resp.Allowed = false
		resp.Result = &metav1.Status{Code: http.StatusInternalServerError, Message: err.Error()}
		return resp
	}
	if res.Patch != nil {
		pt := admissionv1.PatchTypeJSONPatch
		resp.Patch, resp.PatchType = res.Patch, &pt
	}
	return resp
}

func (h *Handler) decide(ctx context.Context, req *admissionv1.AdmissionRequest) (Result, error) {
	if req.Kind.Kind != "Pod" || req.Operation != admissionv1.Create {
		return Result{Reason: fmt.Sprintf("not a pod creation (%s %s)", req.Operation, req.Kind.Kind)}, nil
	}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return Result{}, fmt.Errorf("admission: the pod does not decode: %w", err)
	}
	ns, err := h.Namespaces(ctx, req.Namespace)
	if err != nil {
		return Result{}, fmt.Errorf("admission: namespace %s: %w", req.Namespace, err)
	}
	return Mutate(&pod, ns, h.Config)
}
