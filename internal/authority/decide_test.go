package authority

import (
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var td = spiffeid.RequireTrustDomainFromString("cluster.local")

// input is a request that deserves an SVID, with everything it names.
func input() Input {
	max := int32(86400)
	return Input{
		Request: &certv1.PodCertificateRequest{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "req-1"},
			Spec: certv1.PodCertificateRequestSpec{
				SignerName: SignerName, PodName: "web-1", PodUID: "pod-uid",
				ServiceAccountName: "web", ServiceAccountUID: "sa-uid",
				NodeName: "node-a", NodeUID: "node-uid",
				MaxExpirationSeconds: &max,
			},
		},
		Namespace: &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{EnrolledLabel: "true"}}},
		Pod: &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-1", UID: "pod-uid"},
			Spec:       corev1.PodSpec{NodeName: "node-a", ServiceAccountName: "web"},
			Status:     corev1.PodStatus{Phase: corev1.PodPending},
		},
		Node:           &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a", UID: "node-uid"}},
		ServiceAccount: &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web", UID: "sa-uid"}},
		TrustDomain:    td,
	}
}

func seconds(s int32) *int32 { return &s }

func TestDecide(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Input)
		want   Decision
	}{
		{
			name: "issues for one hour by default",
			want: Decision{Issue: true, ID: spiffeid.RequireFromString("spiffe://cluster.local/ns/shop/sa/web"), Lifetime: time.Hour,
				Message: "pod shop/web-1 (UID pod-uid) on node node-a runs as service account web in an enrolled namespace: issue spiffe://cluster.local/ns/shop/sa/web for 1h0m0s"},
		},
		{
			name:   "a longer wanted lifetime is cut to maxExpirationSeconds",
			change: func(in *Input) { in.Lifetime = 48 * time.Hour; in.Request.Spec.MaxExpirationSeconds = seconds(7200) },
			want: Decision{Issue: true, ID: spiffeid.RequireFromString("spiffe://cluster.local/ns/shop/sa/web"), Lifetime: 2 * time.Hour,
				Message: "pod shop/web-1 (UID pod-uid) on node node-a runs as service account web in an enrolled namespace: issue spiffe://cluster.local/ns/shop/sa/web for 2h0m0s"},
		},
		{
			name:   "no maxExpirationSeconds means 24 hours",
			change: func(in *Input) { in.Lifetime = 48 * time.Hour; in.Request.Spec.MaxExpirationSeconds = nil },
			want: Decision{Issue: true, ID: spiffeid.RequireFromString("spiffe://cluster.local/ns/shop/sa/web"), Lifetime: 24 * time.Hour,
				Message: "pod shop/web-1 (UID pod-uid) on node node-a runs as service account web in an enrolled namespace: issue spiffe://cluster.local/ns/shop/sa/web for 24h0m0s"},
		},
		{
			name:   "another signer",
			change: func(in *Input) { in.Request.Spec.SignerName = "example.com/other" },
			want:   Decision{Reason: ReasonInvalidRequest, Message: `the request is for signer "example.com/other", not kzero.dev/identity`},
		},
		{
			name:   "user annotations",
			change: func(in *Input) { in.Request.Spec.UnverifiedUserAnnotations = map[string]string{"example.com/x": "y"} },
			want:   Decision{Reason: ReasonInvalidUserAnnotations, Message: "kzero recognises no unverifiedUserAnnotations, and the request has 1: remove them from the pod's podCertificate volume"},
		},
		{
			name:   "namespace not labeled",
			change: func(in *Input) { in.Namespace.Labels = nil },
			want:   Decision{Reason: ReasonNotEnrolled, Message: "namespace shop is not enrolled in kzero: label it kzero.dev/enrolled=true to give its pods identities"},
		},
		{
			name:   "namespace labeled false",
			change: func(in *Input) { in.Namespace.Labels[EnrolledLabel] = "false" },
			want:   Decision{Reason: ReasonNotEnrolled, Message: "namespace shop is not enrolled in kzero: label it kzero.dev/enrolled=true to give its pods identities"},
		},
		{
			name:   "namespace gone",
			change: func(in *Input) { in.Namespace = nil },
			want:   Decision{Reason: ReasonNotEnrolled, Message: "namespace shop does not exist"},
		},
		{
			name:   "no such pod",
			change: func(in *Input) { in.Pod = nil },
			want:   Decision{Reason: ReasonPodMismatch, Message: "pod shop/web-1 does not exist"},
		},
		{
			name:   "another pod of that name",
			change: func(in *Input) { in.Pod.UID = "other-uid" },
			want:   Decision{Reason: ReasonPodMismatch, Message: "pod shop/web-1 has UID other-uid, but the request names UID pod-uid: the request is not from that pod"},
		},
		{
			name:   "pod on another node",
			change: func(in *Input) { in.Pod.Spec.NodeName = "node-b" },
			want:   Decision{Reason: ReasonPodMismatch, Message: `pod shop/web-1 is bound to node "node-b", but the request names node node-a: only the pod's own node may ask for its certificate`},
		},
		{
			name:   "pod not bound",
			change: func(in *Input) { in.Pod.Spec.NodeName = "" },
			want:   Decision{Reason: ReasonPodMismatch, Message: `pod shop/web-1 is bound to node "", but the request names node node-a: only the pod's own node may ask for its certificate`},
		},
		{
			name:   "mirror pod",
			change: func(in *Input) { in.Pod.Annotations = map[string]string{corev1.MirrorPodAnnotationKey: "x"} },
			want:   Decision{Reason: ReasonPodMismatch, Message: "pod shop/web-1 is a mirror pod: static pods get no identity; run it as a normal pod"},
		},
		{
			name:   "terminating pod",
			change: func(in *Input) { in.Pod.DeletionTimestamp = &metav1.Time{Time: time.Unix(1800000000, 0)} },
			want:   Decision{Reason: ReasonPodMismatch, Message: "pod shop/web-1 is terminating (to be deleted at 2027-01-15T08:00:00Z): a pod on its way out gets no new certificate; the pod that replaces it gets its own"},
		},
		{
			name: "kube-system, even labeled",
			change: func(in *Input) {
				in.Request.Namespace = "kube-system"
				in.Namespace.Name = "kube-system"
			},
			want: Decision{Reason: ReasonNotEnrolled, Message: "namespace kube-system is Kubernetes' own namespace: its pods never get a workload identity from kzero, whatever its labels; run the workload in a namespace of its own"},
		},
		{
			name: "kzero's own namespace by default, even labeled",
			change: func(in *Input) {
				in.Request.Namespace = "kzero-system"
				in.Namespace.Name = "kzero-system"
			},
			want: Decision{Reason: ReasonNotEnrolled, Message: "namespace kzero-system is kzero's own namespace: its pods never get a workload identity from kzero, whatever its labels; run the workload in a namespace of its own"},
		},
		{
			name: "kzero's own namespace, another one",
			change: func(in *Input) {
				in.OwnNamespace = "shop"
			},
			want: Decision{Reason: ReasonNotEnrolled, Message: "namespace shop is kzero's own namespace: its pods never get a workload identity from kzero, whatever its labels; run the workload in a namespace of its own"},
		},
		{
			name: "kzero-system is a namespace like any other when kzero runs elsewhere",
			change: func(in *Input) {
				in.OwnNamespace = "security"
				in.Request.Namespace = "kzero-system"
				in.Namespace.Name = "kzero-system"
			},
			want: Decision{Issue: true, ID: spiffeid.RequireFromString("spiffe://cluster.local/ns/kzero-system/sa/web"), Lifetime: time.Hour,
				Message: "pod kzero-system/web-1 (UID pod-uid) on node node-a runs as service account web in an enrolled namespace: issue spiffe://cluster.local/ns/kzero-system/sa/web for 1h0m0s"},
		},
		{
			name:   "finished pod",
			change: func(in *Input) { in.Pod.Status.Phase = corev1.PodSucceeded },
			want:   Decision{Reason: ReasonPodMismatch, Message: "pod shop/web-1 has finished (Succeeded) and needs no certificate"},
		},
		{
			name:   "pod runs as another service account",
			change: func(in *Input) { in.Pod.Spec.ServiceAccountName = "admin" },
			want:   Decision{Reason: ReasonServiceAccountMismatch, Message: `pod shop/web-1 runs as service account "admin", but the request names "web"`},
		},
		{
			name:   "service account gone",
			change: func(in *Input) { in.ServiceAccount = nil },
			want:   Decision{Reason: ReasonServiceAccountMismatch, Message: "service account shop/web does not exist"},
		},
		{
			name:   "service account made again",
			change: func(in *Input) { in.ServiceAccount.UID = "new-sa-uid" },
			want:   Decision{Reason: ReasonServiceAccountMismatch, Message: "service account shop/web has UID new-sa-uid, but the request names UID sa-uid: it was deleted and made again; delete pod web-1 so that it starts under the current one"},
		},
		{
			name:   "node gone",
			change: func(in *Input) { in.Node = nil },
			want:   Decision{Reason: ReasonNodeMismatch, Message: "node node-a does not exist"},
		},
		{
			name:   "node replaced",
			change: func(in *Input) { in.Node.UID = "new-node-uid" },
			want:   Decision{Reason: ReasonNodeMismatch, Message: "node node-a has UID new-node-uid, but the request names UID node-uid: the node was replaced; the request did not come from it"},
		},
		{
			name:   "maxExpirationSeconds under an hour",
			change: func(in *Input) { in.Request.Spec.MaxExpirationSeconds = seconds(600) },
			want:   Decision{Reason: ReasonInvalidRequest, Message: "maxExpirationSeconds allows 10m0s, under the shortest lifetime Kubernetes accepts (1h0m0s)"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := input()
			if tc.change != nil {
				tc.change(&in)
			}
			got := Decide(in)
			if got != tc.want {
				t.Errorf("Decide:\n got  %+v\n want %+v", got, tc.want)
			}
		})
	}
}

// A lifetime asked below the minimum is raised to it: kube-apiserver
// refuses shorter certificates.
func TestDecideNeverBelowAnHour(t *testing.T) {
	in := input()
	in.Lifetime = time.Minute
	if got := Decide(in); !got.Issue || got.Lifetime != time.Hour {
		t.Errorf("Decide = %+v, want an issue for 1h", got)
	}
}
