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

// DecidedFunc is told of every decision of a handler, for the audit trail:
// the review's request, the result, and the error that refused the pod
// when the decision could not be made. ctx is the HTTP request's.
type DecidedFunc func(ctx context.Context, req *admissionv1.AdmissionRequest, res Result, err error)

// Handler serves the mutating webhook for pod creation (Mutate).
// Namespaces is required; Config and Log may be zero (Log nil discards).
type Handler struct {
	Namespaces NamespaceGetter
	Config     Config
	Log        *slog.Logger
	// Decided, if set, is told of every decision.
	Decided DecidedFunc
}

// ServeHTTP answers one AdmissionReview.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	serve(w, r, h.Log, func(ctx context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
		return respond(ctx, req, h.Decided, func(pod *corev1.Pod) (Result, error) {
			ns, err := h.Namespaces(ctx, req.Namespace)
			if err != nil {
				return Result{}, fmt.Errorf("admission: namespace %s: %w", req.Namespace, err)
			}
			return Mutate(pod, ns, h.Config)
		})
	})
}

// ValidatingHandler serves the validating webhook for pod creation
// (Validate). Namespaces is required; Log may be nil (discards).
type ValidatingHandler struct {
	Namespaces NamespaceGetter
	Log        *slog.Logger
	// Decided, if set, is told of every decision.
	Decided DecidedFunc
}

// ServeHTTP answers one AdmissionReview.
func (h *ValidatingHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	serve(w, r, h.Log, func(ctx context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
		return respond(ctx, req, h.Decided, func(pod *corev1.Pod) (Result, error) {
			ns, err := h.Namespaces(ctx, req.Namespace)
			if err != nil {
				return Result{}, fmt.Errorf("admission: namespace %s: %w", req.Namespace, err)
			}
			return Validate(pod, ns), nil
		})
	})
}

// serve reads one AdmissionReview from r, has review answer its request
// and writes the review back with the response.
func serve(w http.ResponseWriter, r *http.Request, log *slog.Logger, review func(context.Context, *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse) {
	if r.Method != http.MethodPost {
		http.Error(w, "admission: POST an AdmissionReview", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxReviewBytes+1))
	if err != nil || len(body) > maxReviewBytes {
		http.Error(w, "admission: cannot read the AdmissionReview (or it is over 3 MiB)", http.StatusBadRequest)
		return
	}
	var rv admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &rv); err != nil || rv.Request == nil {
		http.Error(w, "admission: the body is not an admission.k8s.io/v1 AdmissionReview with a request", http.StatusBadRequest)
		return
	}
	rv.Response = review(r.Context(), rv.Request)
	rv.Request = nil
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(&rv); err != nil && log != nil {
		log.Warn("admission: write response", "err", err)
	}
}

// respond decides on the pod a request creates with decide, tells decided,
// and returns the response: the patch, if any; a refusal (403) with the
// result's reason; or, when no decision could be made, a refusal (500):
// only pods of enrolled namespaces reach kzero's webhooks (their
// namespaceSelector), and refusing them is safer than letting a pod start
// without its identity or unchecked. Requests that are not a pod's
// creation are allowed unchanged.
func respond(ctx context.Context, req *admissionv1.AdmissionRequest, decided DecidedFunc, decide func(*corev1.Pod) (Result, error)) *admissionv1.AdmissionResponse {
	resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	var res Result
	var err error
	if req.Kind.Kind != "Pod" || req.Operation != admissionv1.Create {
		res = Result{Reason: fmt.Sprintf("not a pod creation (%s %s)", req.Operation, req.Kind.Kind)}
	} else {
		var pod corev1.Pod
		if err = json.Unmarshal(req.Object.Raw, &pod); err != nil {
			err = fmt.Errorf("admission: the pod does not decode: %w", err)
		} else {
			res, err = decide(&pod)
		}
	}
	if decided != nil {
		decided(ctx, req, res, err)
	}
	switch {
	case err != nil:
		resp.Allowed = false
		resp.Result = &metav1.Status{Code: http.StatusInternalServerError, Message: err.Error()}
	case res.Refused:
		resp.Allowed = false
		resp.Result = &metav1.Status{Code: http.StatusForbidden, Reason: metav1.StatusReasonForbidden, Message: res.Reason}
	case res.Patch != nil:
		pt := admissionv1.PatchTypeJSONPatch
		resp.Patch, resp.PatchType = res.Patch, &pt
	}
	return resp
}
