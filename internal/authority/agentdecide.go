package authority

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"kzero.dev/kzero/api/v1alpha1"
	"kzero.dev/kzero/internal/agentapi"
)

// The keys kube-apiserver puts in the user extra of a service account
// token bound to a pod (k8s.io/apiserver, pkg/authentication/serviceaccount:
// PodNameKey, PodUIDKey, NodeNameKey).
const (
	extraPodName  = "authentication.kubernetes.io/pod-name"
	extraPodUID   = "authentication.kubernetes.io/pod-uid"
	extraNodeName = "authentication.kubernetes.io/node-name"
)

// apiRefusal is an answer of the agent API that is not 200: the HTTP status
// and a message for a person, what was wrong and what to do.
type apiRefusal struct {
	status int
	msg    string
}

func refuseWith(status int, format string, args ...any) *apiRefusal {
	return &apiRefusal{status: status, msg: fmt.Sprintf(format, args...)}
}

// agentToken is what a TokenReview says of an agent's token.
type agentToken struct {
	// user is the Kubernetes user it authenticated as; empty when it did
	// not authenticate.
	user string
	// pod, podUID and node are those the token is bound to, when it is.
	pod, podUID, node string
}

// checkTokenReview checks a TokenReview's answer: the token authenticated,
// for TokenAudience, as the service account wantUser, bound to a pod on a
// node. It returns what the token says even when it refuses.
func checkTokenReview(st authnv1.TokenReviewStatus, wantUser string) (agentToken, *apiRefusal) {
	if !st.Authenticated {
		why := st.Error
		if why == "" {
			why = "kube-apiserver did not authenticate it"
		}
		return agentToken{}, refuseWith(http.StatusUnauthorized,
			"the token does not authenticate for audience %s (%s): attest with the agent pod's projected service account token of audience %s, and a fresh one when it expires",
			agentapi.TokenAudience, why, agentapi.TokenAudience)
	}
	t := agentToken{user: st.User.Username}
	one := func(key string) string {
		if v := st.User.Extra[key]; len(v) == 1 {
			return v[0]
		}
		return ""
	}
	t.pod, t.podUID, t.node = one(extraPodName), one(extraPodUID), one(extraNodeName)
	if !slices.Contains(st.Audiences, agentapi.TokenAudience) {
		return t, refuseWith(http.StatusUnauthorized,
			"the token authenticates for audiences %q, not %s: attest with a projected service account token of audience %s",
			st.Audiences, agentapi.TokenAudience, agentapi.TokenAudience)
	}
	if t.user != wantUser {
		return t, refuseWith(http.StatusForbidden,
			"the token is of %s, not of the agents' service account %s: only the pods of the kzero agent DaemonSet attest",
			t.user, wantUser)
	}
	if t.pod == "" || t.podUID == "" {
		return t, refuseWith(http.StatusForbidden,
			"the token of %s is bound to no pod (its user extra has no %s and %s): attest with the projected token mounted in the agent's pod, not one made for the service account alone",
			t.user, extraPodName, extraPodUID)
	}
	if t.node == "" {
		return t, refuseWith(http.StatusForbidden,
			"the token of pod %s names no node (its user extra has no %s): attest with a token projected into the scheduled agent pod, by a kube-apiserver that records the node in it",
			t.pod, extraNodeName)
	}
	return t, nil
}

// checkAgentPod checks the pod the token is bound to, as the API server
// has it now: that very pod (its UID), in namespace, controlled by the
// DaemonSet daemonSet, bound to the token's node, and neither terminating
// nor finished.
func checkAgentPod(t agentToken, namespace, daemonSet string, p *corev1.Pod) *apiRefusal {
	name := namespace + "/" + t.pod
	switch {
	case p == nil:
		return refuseWith(http.StatusForbidden, "pod %s, which the token is bound to, does not exist: a new agent pod attests with its own token", name)
	case string(p.UID) != t.podUID:
		return refuseWith(http.StatusForbidden, "pod %s has UID %s, but the token names UID %s: the token is of an earlier pod of that name; attest with the current pod's token", name, p.UID, t.podUID)
	}
	if ref := metav1.GetControllerOfNoCopy(p); !isDaemonSet(ref, daemonSet) {
		owner := "no controller"
		if ref != nil {
			owner = "controller " + ref.Kind + " " + ref.Name
		}
		return refuseWith(http.StatusForbidden, "pod %s is not a pod of DaemonSet %s/%s (it has %s): only the kzero agent DaemonSet's pods attest", name, namespace, daemonSet, owner)
	}
	switch {
	case p.Spec.NodeName != t.node:
		return refuseWith(http.StatusForbidden, "pod %s is bound to node %q, but the token names node %s: an agent attests only for the node its pod runs on", name, p.Spec.NodeName, t.node)
	case p.DeletionTimestamp != nil:
		return refuseWith(http.StatusForbidden, "pod %s is terminating: the DaemonSet's next pod on node %s attests", name, t.node)
	case p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed:
		return refuseWith(http.StatusForbidden, "pod %s has finished (%s): the DaemonSet's next pod on node %s attests", name, p.Status.Phase, t.node)
	}
	return nil
}

// isDaemonSet reports whether ref is the apps DaemonSet of that name.
func isDaemonSet(ref *metav1.OwnerReference, name string) bool {
	if ref == nil || ref.Kind != "DaemonSet" || ref.Name != name {
		return false
	}
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	return err == nil && gv.Group == "apps"
}

// agentID is the SPIFFE ID of the agent of node.
func agentID(td spiffeid.TrustDomain, node string) (spiffeid.ID, error) {
	return spiffeid.FromPath(td, agentapi.AgentPathPrefix+node)
}

// agentNode returns the node of an agent's SPIFFE ID, and false for any
// other ID.
func agentNode(td spiffeid.TrustDomain, id spiffeid.ID) (string, bool) {
	if !id.MemberOf(td) {
		return "", false
	}
	node, ok := strings.CutPrefix(id.Path(), agentapi.AgentPathPrefix)
	return node, ok && node != "" && !strings.Contains(node, "/")
}

// workloadID splits a workload's SPIFFE ID, spiffe://<td>/ns/<ns>/sa/<sa>,
// which the agent of node asked for; it refuses the IDs of the namespaces
// that never get one (v1alpha1.NeverEnrolled, own being kzero's).
func workloadID(td spiffeid.TrustDomain, own, node string, id spiffeid.ID) (ns, sa string, r *apiRefusal) {
	if !id.MemberOf(td) {
		return "", "", refuseWith(http.StatusForbidden, "the agent of node %s asked for %s, outside trust domain %s: agents get only spiffe://%s/ns/<namespace>/sa/<service-account>",
			node, id, td.Name(), td.Name())
	}
	seg := strings.Split(strings.TrimPrefix(id.Path(), "/"), "/")
	if len(seg) != 4 || seg[0] != "ns" || seg[2] != "sa" {
		return "", "", refuseWith(http.StatusForbidden, "the agent of node %s asked for %s, which is not a workload's SPIFFE ID: agents get only spiffe://%s/ns/<namespace>/sa/<service-account>, for the pods of their node",
			node, id, td.Name())
	}
	if v1alpha1.NeverEnrolled(seg[1], own) {
		return "", "", refuseWith(http.StatusForbidden, "the agent of node %s asked for %s, but namespace %s is %s: its pods never get a workload identity from kzero, whatever its labels",
			node, id, seg[1], neverEnrolledWhy(seg[1], own))
	}
	return seg[1], seg[3], nil
}

// decideWorkload decides whether the agent of node may have id, the ID of
// service account sa of namespace: the namespace is enrolled and one of
// pods (those of the namespace on node) runs as sa, neither finished nor
// terminating, and is not a mirror pod. It returns that pod, or why not.
// It is a pure function.
func decideWorkload(node string, id spiffeid.ID, ns, sa string, namespace *corev1.Namespace, pods []*corev1.Pod) (*corev1.Pod, *apiRefusal) {
	switch {
	case namespace == nil:
		return nil, refuseWith(http.StatusForbidden, "the agent of node %s asked for %s, but namespace %s does not exist", node, id, ns)
	case namespace.Labels[EnrolledLabel] != "true":
		return nil, refuseWith(http.StatusForbidden, "the agent of node %s asked for %s, but namespace %s is not enrolled in kzero: label it %s=true to give its pods identities", node, id, ns, EnrolledLabel)
	}
	for _, p := range pods {
		if p.Namespace == ns && p.Spec.NodeName == node && p.Spec.ServiceAccountName == sa && p.DeletionTimestamp == nil &&
			p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed &&
			p.Annotations[corev1.MirrorPodAnnotationKey] == "" {
			return p, nil
		}
	}
	return nil, refuseWith(http.StatusForbidden, "the agent of node %s asked for %s, which runs on no pod of node %s: an agent gets only the identities of its own node's running pods", node, id, node)
}
