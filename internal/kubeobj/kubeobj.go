// Package kubeobj holds the Kubernetes objects the node agent reads from
// the API server (pods, namespaces, ClusterTrustBundles) with only the
// fields it reads, and the scheme that decodes them from the API server's
// JSON.
//
// The agent runs on every node, and k8s.io/api's core/v1 alone is 1.7 MB
// of code in a binary: every one of its 241 types is linked with its
// protobuf, DeepCopy and String methods, since its scheme registration
// reaches them all. These types mirror the API's field names (a test
// decodes k8s.io/api's objects into them), so the API server's JSON
// decodes into them; what they lack is skipped.
package kubeobj

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// CoreV1 and CertificatesV1 are the API group versions of these types.
var (
	CoreV1         = schema.GroupVersion{Version: "v1"}
	CertificatesV1 = schema.GroupVersion{Group: "certificates.k8s.io", Version: "v1"}
)

// AddToScheme registers the types under their group versions, with the
// meta/v1 types (options, Status, WatchEvent) that a client of those
// group versions needs.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(CoreV1, &Pod{}, &PodList{}, &Namespace{}, &NamespaceList{})
	metav1.AddToGroupVersion(s, CoreV1)
	s.AddKnownTypes(CertificatesV1, &ClusterTrustBundle{}, &ClusterTrustBundleList{})
	metav1.AddToGroupVersion(s, CertificatesV1)
	return nil
}

// MirrorPodAnnotationKey is the annotation kubelet sets on the mirror pod
// of a static pod.
const MirrorPodAnnotationKey = "kubernetes.io/config.mirror"

// Pod is a core/v1 Pod: who it is, where it runs, and its containers'
// IDs and states.
type Pod struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              PodSpec   `json:"spec,omitempty"`
	Status            PodStatus `json:"status,omitempty"`
}

// PodSpec is the part of a pod's spec the agent reads.
type PodSpec struct {
	NodeName           string `json:"nodeName,omitempty"`
	ServiceAccountName string `json:"serviceAccountName,omitempty"`
}

// PodStatus is the part of a pod's status the agent reads.
type PodStatus struct {
	Phase                      PodPhase          `json:"phase,omitempty"`
	InitContainerStatuses      []ContainerStatus `json:"initContainerStatuses,omitempty"`
	ContainerStatuses          []ContainerStatus `json:"containerStatuses,omitempty"`
	EphemeralContainerStatuses []ContainerStatus `json:"ephemeralContainerStatuses,omitempty"`
}

// PodPhase is a pod's phase.
type PodPhase string

// The phases of a pod.
const (
	PodPending   PodPhase = "Pending"
	PodRunning   PodPhase = "Running"
	PodSucceeded PodPhase = "Succeeded"
	PodFailed    PodPhase = "Failed"
)

// ContainerStatus is the part of a container's status the agent reads:
// its name in the pod's spec, the runtime's ID of it
// ("<runtime>://<id>"), and whether it runs.
type ContainerStatus struct {
	Name        string         `json:"name"`
	ContainerID string         `json:"containerID,omitempty"`
	State       ContainerState `json:"state,omitempty"`
}

// ContainerState is whether a container runs; Running is nil when it
// waits or has terminated.
type ContainerState struct {
	Running *ContainerStateRunning `json:"running,omitempty"`
}

// ContainerStateRunning is a running container's state; the agent reads
// none of it.
type ContainerStateRunning struct{}

// PodList is a list of pods.
type PodList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Pod `json:"items"`
}

// Namespace is a core/v1 Namespace: its metadata.
type Namespace struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
}

// NamespaceList is a list of namespaces.
type NamespaceList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Namespace `json:"items"`
}

// ClusterTrustBundle is a certificates.k8s.io/v1 ClusterTrustBundle.
type ClusterTrustBundle struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              ClusterTrustBundleSpec `json:"spec"`
}

// ClusterTrustBundleSpec is a ClusterTrustBundle's CA certificates, PEM.
type ClusterTrustBundleSpec struct {
	TrustBundle string `json:"trustBundle"`
}

// ClusterTrustBundleList is a list of ClusterTrustBundles.
type ClusterTrustBundleList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterTrustBundle `json:"items"`
}
