package kubeobj

import (
	"encoding/json"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"kzero.dev/kzero/api/v1alpha1"
)

// KzeroV1alpha1 is the API group version of kzero's own types.
var KzeroV1alpha1 = schema.GroupVersion{Group: v1alpha1.Group, Version: v1alpha1.Version}

// AccessPolicy is kzero's AccessPolicy as the agent reads it: its spec,
// not its status (which the authority writes).
type AccessPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              v1alpha1.AccessPolicySpec `json:"spec"`
}

// AccessPolicyList is a list of AccessPolicies.
type AccessPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AccessPolicy `json:"items"`
}

// DeepCopy copies the policy. The spec's rules nest maps and lists
// several levels deep: it is copied through JSON, which the agent does
// only when a policy changes.
func (in *AccessPolicy) DeepCopy() *AccessPolicy {
	if in == nil {
		return nil
	}
	out := &AccessPolicy{TypeMeta: in.TypeMeta, ObjectMeta: *in.ObjectMeta.DeepCopy()}
	copyJSON(&in.Spec, &out.Spec)
	return out
}

// DeepCopyObject implements runtime.Object.
func (in *AccessPolicy) DeepCopyObject() runtime.Object {
	if in == nil {
		return nil
	}
	return in.DeepCopy()
}

// DeepCopy copies the list.
func (in *AccessPolicyList) DeepCopy() *AccessPolicyList {
	if in == nil {
		return nil
	}
	out := &AccessPolicyList{TypeMeta: in.TypeMeta, ListMeta: *in.ListMeta.DeepCopy()}
	if in.Items != nil {
		out.Items = make([]AccessPolicy, len(in.Items))
		for i := range in.Items {
			out.Items[i] = *in.Items[i].DeepCopy()
		}
	}
	return out
}

// DeepCopyObject implements runtime.Object.
func (in *AccessPolicyList) DeepCopyObject() runtime.Object {
	if in == nil {
		return nil
	}
	return in.DeepCopy()
}

// Policy returns the AccessPolicy in the API's type, for the compiler.
func (in *AccessPolicy) Policy() v1alpha1.AccessPolicy {
	return v1alpha1.AccessPolicy{TypeMeta: in.TypeMeta, ObjectMeta: in.ObjectMeta, Spec: in.Spec}
}

// copyJSON copies in into out through JSON; both are plain data, so it
// cannot fail.
func copyJSON(in, out any) {
	b, err := json.Marshal(in)
	if err != nil {
		panic("kubeobj: copying a spec: " + err.Error())
	}
	if err := json.Unmarshal(b, out); err != nil {
		panic("kubeobj: copying a spec: " + err.Error())
	}
}
