package authority

import (
	"errors"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"kzero.dev/kzero/internal/admission"
	"kzero.dev/kzero/internal/audit"
)

// The audit event of a verdict names the pod, or, for a pod whose name
// kube-apiserver has yet to make, the prefix it will start with.
func TestAdmissionEvent(t *testing.T) {
	request := func(name, object string) *admissionv1.AdmissionRequest {
		return &admissionv1.AdmissionRequest{
			UID: "u1", Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Namespace: "shop", Name: name, Operation: admissionv1.Create,
			UserInfo: authnv1.UserInfo{Username: "system:serviceaccount:kube-system:replicaset-controller"},
			Object:   runtime.RawExtension{Raw: []byte(object)},
		}
	}
	patched := admission.Result{Patch: []byte(`[]`), Reason: "added the identity volume"}
	for _, tc := range []struct {
		name    string
		req     *admissionv1.AdmissionRequest
		res     admission.Result
		err     error
		want    audit.Admission
		outcome audit.Outcome
		reason  string
	}{
		{"named pod", request("web", `{"metadata":{"name":"web"}}`), patched, nil,
			audit.Admission{Name: "web", Allowed: true, Patched: true}, audit.OutcomeAllow, "pod identity webhook: added the identity volume"},
		{"pod of a ReplicaSet", request("", `{"metadata":{"generateName":"web-7d9f8-"}}`), patched, nil,
			audit.Admission{GenerateName: "web-7d9f8-", Allowed: true, Patched: true}, audit.OutcomeAllow, "pod identity webhook: added the identity volume"},
		{"object that does not decode", request("", `{`), admission.Result{}, errors.New("bad pod"),
			audit.Admission{}, audit.OutcomeDeny, "pod identity webhook refused the pod: bad pod"},
		{"pod refused", request("debug", `{"metadata":{"name":"debug"}}`), admission.Result{Refused: true, Reason: "hostPath"}, nil,
			audit.Admission{Name: "debug"}, audit.OutcomeDeny, "pod identity webhook refused the pod: hostPath"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := admissionEvent(tc.req, tc.res, tc.err, "pod identity webhook: ", "pod identity webhook refused the pod: ")
			want := tc.want
			want.UID, want.Resource, want.Namespace, want.Operation = "u1", "v1/pods", "shop", "CREATE"
			want.User = "system:serviceaccount:kube-system:replicaset-controller"
			if *e.Admission != want {
				t.Errorf("admission = %+v, want %+v", *e.Admission, want)
			}
			if e.Kind != audit.KindAdmission || e.Outcome != tc.outcome || e.Reason != tc.reason {
				t.Errorf("event %s %s %q, want admission %s %q", e.Kind, e.Outcome, e.Reason, tc.outcome, tc.reason)
			}
		})
	}
}
