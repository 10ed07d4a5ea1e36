package authority

import (
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"

	"kzero.dev/kzero/api/v1alpha1"
)

// SignerName is the signer kzero implements.
const SignerName = v1alpha1.SignerName

// EnrolledLabel is the namespace label that enrolls a namespace: only pods
// in namespaces labeled EnrolledLabel=true get an identity.
const EnrolledLabel = v1alpha1.EnrolledLabel

// Lifetimes. kube-apiserver refuses a certificate that lives less than
// MinLifetime or more than the request's maxExpirationSeconds (by default
// DefaultMaxExpiration).
const (
	MinLifetime          = time.Hour
	DefaultMaxExpiration = 24 * time.Hour
	// DefaultLifetime is the lifetime kzero issues when it may: leaves are
	// short-lived.
	DefaultLifetime = time.Hour
)

// Reason says why a request was denied; it is the Denied condition's
// reason. Every value is a valid condition reason (CamelCase).
type Reason string

// Denial reasons.
const (
	// ReasonUnsupportedKeyType: the CA does not certify the pod's key type
	// (the reason Kubernetes defines for this).
	ReasonUnsupportedKeyType Reason = Reason(certv1.PodCertificateRequestConditionUnsupportedKeyType)
	// ReasonInvalidUserAnnotations: the request carries
	// unverifiedUserAnnotations; kzero recognises none (the reason
	// Kubernetes defines for this).
	ReasonInvalidUserAnnotations Reason = Reason(certv1.PodCertificateRequestConditionInvalidUserConfig)
	// ReasonNotEnrolled: the pod's namespace is not enrolled, or is one
	// that never is (v1alpha1.NeverEnrolled).
	ReasonNotEnrolled Reason = "NotEnrolled"
	// ReasonPodMismatch: no such pod, another pod of that name, a pod on
	// another node, a mirror pod, a pod that is terminating or one that
	// has finished.
	ReasonPodMismatch Reason = "PodMismatch"
	// ReasonNodeMismatch: no such node, or a node of another UID.
	ReasonNodeMismatch Reason = "NodeMismatch"
	// ReasonServiceAccountMismatch: the pod runs as another service
	// account, or the service account is missing or of another UID.
	ReasonServiceAccountMismatch Reason = "ServiceAccountMismatch"
	// ReasonInvalidRequest: a request the CA refuses (its CSR, names) or
	// that names another signer or an impossible lifetime.
	ReasonInvalidRequest Reason = "InvalidRequest"
)

// Input is everything Decide needs, gathered from the API server by the
// Signer. A nil object means the API server has none of that name.
type Input struct {
	// Request is the PodCertificateRequest. Required.
	Request *certv1.PodCertificateRequest
	// Namespace is the request's namespace.
	Namespace *corev1.Namespace
	// Pod is the pod named by spec.podName in the request's namespace.
	Pod *corev1.Pod
	// Node is the node named by spec.nodeName.
	Node *corev1.Node
	// ServiceAccount is the one named by spec.serviceAccountName in the
	// request's namespace.
	ServiceAccount *corev1.ServiceAccount
	// TrustDomain is the trust domain the ID is made in.
	TrustDomain spiffeid.TrustDomain
	// OwnNamespace is the namespace kzero runs in, whose pods, like those
	// of kube-system, never get an identity; empty means
	// v1alpha1.Namespace.
	OwnNamespace string
	// Lifetime is the lifetime kzero wants to issue; zero means
	// DefaultLifetime. Decide fits it between MinLifetime and the
	// request's maxExpirationSeconds.
	Lifetime time.Duration
}

// Decision is what to do with a request: issue ID for Lifetime, or deny
// with Reason. Message is for a person in both cases: what was decided,
// why, and for a denial what to do.
type Decision struct {
	Issue    bool
	ID       spiffeid.ID
	Lifetime time.Duration
	Reason   Reason
	Message  string
}

// Decide checks a PodCertificateRequest against the objects the API server
// holds. It is a pure function: the same input gives the same decision.
func Decide(in Input) Decision {
	r := in.Request
	ns, podName := r.Namespace, r.Spec.PodName
	deny := func(reason Reason, format string, args ...any) Decision {
		return Decision{Reason: reason, Message: fmt.Sprintf(format, args...)}
	}
	if r.Spec.SignerName != SignerName {
		return deny(ReasonInvalidRequest, "the request is for signer %q, not %s", r.Spec.SignerName, SignerName)
	}
	if len(r.Spec.UnverifiedUserAnnotations) > 0 {
		return deny(ReasonInvalidUserAnnotations, "kzero recognises no unverifiedUserAnnotations, and the request has %d: remove them from the pod's podCertificate volume", len(r.Spec.UnverifiedUserAnnotations))
	}
	if own := ownNamespace(in.OwnNamespace); v1alpha1.NeverEnrolled(ns, own) {
		return deny(ReasonNotEnrolled, "namespace %s is %s: its pods never get a workload identity from kzero, whatever its labels; run the workload in a namespace of its own", ns, neverEnrolledWhy(ns, own))
	}
	if in.Namespace == nil {
		return deny(ReasonNotEnrolled, "namespace %s does not exist", ns)
	}
	if in.Namespace.Labels[EnrolledLabel] != "true" {
		return deny(ReasonNotEnrolled, "namespace %s is not enrolled in kzero: label it %s=true to give its pods identities", ns, EnrolledLabel)
	}
	if d, ok := checkPod(in); !ok {
		return d
	}
	sa := r.Spec.ServiceAccountName
	if in.ServiceAccount == nil {
		return deny(ReasonServiceAccountMismatch, "service account %s/%s does not exist", ns, sa)
	}
	if in.ServiceAccount.UID != r.Spec.ServiceAccountUID {
		return deny(ReasonServiceAccountMismatch, "service account %s/%s has UID %s, but the request names UID %s: it was deleted and made again; delete pod %s so that it starts under the current one",
			ns, sa, in.ServiceAccount.UID, r.Spec.ServiceAccountUID, podName)
	}
	node := string(r.Spec.NodeName)
	if in.Node == nil {
		return deny(ReasonNodeMismatch, "node %s does not exist", node)
	}
	if in.Node.UID != r.Spec.NodeUID {
		return deny(ReasonNodeMismatch, "node %s has UID %s, but the request names UID %s: the node was replaced; the request did not come from it", node, in.Node.UID, r.Spec.NodeUID)
	}
	id, err := spiffeid.FromSegments(in.TrustDomain, "ns", ns, "sa", sa)
	if err != nil {
		return deny(ReasonInvalidRequest, "namespace %q and service account %q make no valid SPIFFE ID: %v", ns, sa, err)
	}
	lifetime, d, ok := fitLifetime(in)
	if !ok {
		return d
	}
	return Decision{Issue: true, ID: id, Lifetime: lifetime,
		Message: fmt.Sprintf("pod %s/%s (UID %s) on node %s runs as service account %s in an enrolled namespace: issue %s for %s", ns, podName, r.Spec.PodUID, node, sa, id, lifetime)}
}

// checkPod checks that the pod is the one the request names, on the node
// it names, under the service account it names.
func checkPod(in Input) (Decision, bool) {
	r, p := in.Request, in.Pod
	ns, name := r.Namespace, r.Spec.PodName
	deny := func(reason Reason, format string, args ...any) (Decision, bool) {
		return Decision{Reason: reason, Message: fmt.Sprintf(format, args...)}, false
	}
	switch {
	case p == nil:
		return deny(ReasonPodMismatch, "pod %s/%s does not exist", ns, name)
	case p.UID != r.Spec.PodUID:
		return deny(ReasonPodMismatch, "pod %s/%s has UID %s, but the request names UID %s: the request is not from that pod", ns, name, p.UID, r.Spec.PodUID)
	case p.Spec.NodeName != string(r.Spec.NodeName):
		return deny(ReasonPodMismatch, "pod %s/%s is bound to node %q, but the request names node %s: only the pod's own node may ask for its certificate", ns, name, p.Spec.NodeName, r.Spec.NodeName)
	case p.DeletionTimestamp != nil:
		return deny(ReasonPodMismatch, "pod %s/%s is terminating (to be deleted at %s): a pod on its way out gets no new certificate; the pod that replaces it gets its own", ns, name, p.DeletionTimestamp.UTC().Format(time.RFC3339))
	case p.Annotations[corev1.MirrorPodAnnotationKey] != "":
		return deny(ReasonPodMismatch, "pod %s/%s is a mirror pod: static pods get no identity; run it as a normal pod", ns, name)
	case p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed:
		return deny(ReasonPodMismatch, "pod %s/%s has finished (%s) and needs no certificate", ns, name, p.Status.Phase)
	case p.Spec.ServiceAccountName != r.Spec.ServiceAccountName:
		return deny(ReasonServiceAccountMismatch, "pod %s/%s runs as service account %q, but the request names %q", ns, name, p.Spec.ServiceAccountName, r.Spec.ServiceAccountName)
	}
	return Decision{}, true
}

// ownNamespace is kzero's namespace: ns, or v1alpha1.Namespace when
// empty.
func ownNamespace(ns string) string {
	if ns == "" {
		return v1alpha1.Namespace
	}
	return ns
}

// neverEnrolledWhy names a namespace for which v1alpha1.NeverEnrolled is
// true, for a denial's message.
func neverEnrolledWhy(ns, own string) string {
	if ns == own {
		return "kzero's own namespace"
	}
	return "Kubernetes' own namespace"
}

// fitLifetime returns the wanted lifetime, cut to the request's
// maxExpirationSeconds, and never under MinLifetime.
func fitLifetime(in Input) (time.Duration, Decision, bool) {
	limit := DefaultMaxExpiration
	if s := in.Request.Spec.MaxExpirationSeconds; s != nil {
		limit = time.Duration(*s) * time.Second
	}
	if limit < MinLifetime {
		return 0, Decision{Reason: ReasonInvalidRequest, Message: fmt.Sprintf("maxExpirationSeconds allows %s, under the shortest lifetime Kubernetes accepts (%s)", limit, MinLifetime)}, false
	}
	lifetime := in.Lifetime
	if lifetime == 0 {
		lifetime = DefaultLifetime
	}
	lifetime = min(max(lifetime, MinLifetime), limit)
	return lifetime, Decision{}, true
}
