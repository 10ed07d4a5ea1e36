// Package kubeobj holds the Kubernetes objects the node agent reads from
// the API server (pods, namespaces, ClusterTrustBundles and, for the
// mesh, services and EndpointSlices) with only the fields it reads, and
// the scheme that decodes them from the API server's JSON.
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
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// CoreV1, CertificatesV1 and DiscoveryV1 are the API group versions of
// these types.
var (
	CoreV1         = schema.GroupVersion{Version: "v1"}
	CertificatesV1 = schema.GroupVersion{Group: "certificates.k8s.io", Version: "v1"}
	DiscoveryV1    = schema.GroupVersion{Group: "discovery.k8s.io", Version: "v1"}
)

// AddToScheme registers the types under their group versions, with the
// meta/v1 types (options, Status, WatchEvent) that a client of those
// group versions needs.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(CoreV1, &Pod{}, &PodList{}, &Namespace{}, &NamespaceList{}, &Service{}, &ServiceList{})
	metav1.AddToGroupVersion(s, CoreV1)
	s.AddKnownTypes(CertificatesV1, &ClusterTrustBundle{}, &ClusterTrustBundleList{})
	metav1.AddToGroupVersion(s, CertificatesV1)
	s.AddKnownTypes(DiscoveryV1, &EndpointSlice{}, &EndpointSliceList{})
	metav1.AddToGroupVersion(s, DiscoveryV1)
	s.AddKnownTypes(KzeroV1alpha1, &AccessPolicy{}, &AccessPolicyList{})
	metav1.AddToGroupVersion(s, KzeroV1alpha1)
	return nil
}

// MirrorPodAnnotationKey is the annotation kubelet sets on the mirror pod
// of a static pod.
const MirrorPodAnnotationKey = "kubernetes.io/config.mirror"

// Pod is a core/v1 Pod: who it is, where it runs, its addresses, and its
// containers' IDs and states.
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
	// HostNetwork is true when the pod shares its node's network
	// namespace, and so its node's addresses.
	HostNetwork bool `json:"hostNetwork,omitempty"`
}

// PodStatus is the part of a pod's status the agent reads.
type PodStatus struct {
	Phase PodPhase `json:"phase,omitempty"`
	// PodIP is the pod's first address, PodIPs all of them (one per
	// family), once the pod has them.
	PodIP                      string            `json:"podIP,omitempty"`
	PodIPs                     []PodIP           `json:"podIPs,omitempty"`
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

// PodIP is one of a pod's addresses.
type PodIP struct {
	IP string `json:"ip"`
}

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

// ServiceNameLabel, on an EndpointSlice, names the service (of the
// slice's namespace) whose endpoints it holds.
const ServiceNameLabel = "kubernetes.io/service-name"

// Protocol is a port's network protocol.
type Protocol string

// The protocols of a port; an empty one is TCP.
const (
	ProtocolTCP  Protocol = "TCP"
	ProtocolUDP  Protocol = "UDP"
	ProtocolSCTP Protocol = "SCTP"
)

// Service is a core/v1 Service: its virtual addresses and ports.
type Service struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              ServiceSpec `json:"spec,omitempty"`
}

// ServiceSpec is the part of a service's spec the agent reads.
type ServiceSpec struct {
	Type ServiceType `json:"type,omitempty"`
	// ClusterIP is the service's first virtual address, ClusterIPs all
	// of them (one per family); ClusterIPNone for a headless service, ""
	// for an ExternalName one.
	ClusterIP  string        `json:"clusterIP,omitempty"`
	ClusterIPs []string      `json:"clusterIPs,omitempty"`
	Ports      []ServicePort `json:"ports,omitempty"`
}

// ServiceType is how a service is exposed.
type ServiceType string

// The types of a service.
const (
	ServiceTypeClusterIP    ServiceType = "ClusterIP"
	ServiceTypeNodePort     ServiceType = "NodePort"
	ServiceTypeLoadBalancer ServiceType = "LoadBalancer"
	ServiceTypeExternalName ServiceType = "ExternalName"
)

// ClusterIPNone is the ClusterIP of a headless service.
const ClusterIPNone = "None"

// ServicePort is one port of a service: Port on its ClusterIPs leads to
// TargetPort (a number or the name of a container port) on its pods.
// Name is "" only when the service has a single port; its EndpointSlices'
// ports have the same names.
type ServicePort struct {
	Name       string             `json:"name,omitempty"`
	Protocol   Protocol           `json:"protocol,omitempty"`
	Port       int32              `json:"port"`
	TargetPort intstr.IntOrString `json:"targetPort,omitempty"`
}

// ServiceList is a list of services.
type ServiceList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Service `json:"items"`
}

// EndpointSlice is a discovery.k8s.io/v1 EndpointSlice: some of a
// service's endpoints (ServiceNameLabel names it), all of one address
// type, with the ports they serve.
type EndpointSlice struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	AddressType       AddressType    `json:"addressType"`
	Endpoints         []Endpoint     `json:"endpoints"`
	Ports             []EndpointPort `json:"ports"`
}

// AddressType is the kind of address of an EndpointSlice's endpoints.
type AddressType string

// The address types of an EndpointSlice.
const (
	AddressTypeIPv4 AddressType = "IPv4"
	AddressTypeIPv6 AddressType = "IPv6"
	AddressTypeFQDN AddressType = "FQDN"
)

// Endpoint is one endpoint of an EndpointSlice: its addresses (the
// EndpointSlice controller's have one), whether it takes traffic, and the
// object behind it, a pod for a service with a selector.
type Endpoint struct {
	Addresses  []string           `json:"addresses"`
	Conditions EndpointConditions `json:"conditions,omitempty"`
	TargetRef  *ObjectReference   `json:"targetRef,omitempty"`
	NodeName   *string            `json:"nodeName,omitempty"`
}

// EndpointConditions are an endpoint's conditions, nil when unknown: an
// unknown Ready or Serving is true, an unknown Terminating false.
type EndpointConditions struct {
	Ready       *bool `json:"ready,omitempty"`
	Serving     *bool `json:"serving,omitempty"`
	Terminating *bool `json:"terminating,omitempty"`
}

// ObjectReference is the part of a reference to an object the agent
// reads.
type ObjectReference struct {
	Kind      string    `json:"kind,omitempty"`
	Namespace string    `json:"namespace,omitempty"`
	Name      string    `json:"name,omitempty"`
	UID       types.UID `json:"uid,omitempty"`
}

// EndpointPort is a port an EndpointSlice's endpoints serve: for a
// service's slice, the number its service port's TargetPort resolves to
// on these endpoints, under the service port's Name. A nil Name is "", a
// nil Protocol TCP; Port is set in every slice made for a service.
type EndpointPort struct {
	Name     *string   `json:"name,omitempty"`
	Protocol *Protocol `json:"protocol,omitempty"`
	Port     *int32    `json:"port,omitempty"`
}

// EndpointSliceList is a list of EndpointSlices.
type EndpointSliceList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []EndpointSlice `json:"items"`
}
