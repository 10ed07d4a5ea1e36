package agent

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"kzero.dev/kzero/api/v1alpha1"
	"kzero.dev/kzero/internal/kubeobj"
)

// Kube lists and watches what the agent reads from the API server.
type Kube interface {
	// Pods are the pods bound to the node.
	Pods(nodeName string) cache.ListerWatcher
	// Namespaces are the enrolled namespaces: labeled
	// v1alpha1.EnrolledLabel=true (a namespace that loses the label is
	// deleted from what it lists and watches).
	Namespaces() cache.ListerWatcher
	// ClusterTrustBundle is the ClusterTrustBundle of that name.
	ClusterTrustBundle(name string) cache.ListerWatcher

	// AllPods, Services and EndpointSlices are what the mesh resolves
	// addresses with (internal/meshresolve), cluster-wide. AllPods are
	// the pods of every node; it may leave out those on their node's
	// network (spec.hostNetwork) and those that have finished, which
	// hold no address of their own.
	AllPods() cache.ListerWatcher
	// Services are the services of every namespace.
	Services() cache.ListerWatcher
	// EndpointSlices are the EndpointSlices of every namespace that name
	// their service (labeled kubeobj.ServiceNameLabel).
	EndpointSlices() cache.ListerWatcher
	// AccessPolicies are kzero's AccessPolicies of every namespace, which
	// decide the mesh's streams.
	AccessPolicies() cache.ListerWatcher
}

// restKube is Kube over three REST clients that know only kubeobj's
// types: the fields of the objects the agent reads, decoded from JSON.
// The agent links none of k8s.io/api (nor the clientset's every API
// group), which keeps its memory small (docs/agent.md, Memory).
type restKube struct{ core, certificates, discovery, kzero rest.Interface }

// NewKube returns the Kube of the API server cfg reaches.
func NewKube(cfg *rest.Config) (Kube, error) {
	scheme := runtime.NewScheme()
	if err := kubeobj.AddToScheme(scheme); err != nil {
		return nil, err
	}
	codecs := serializer.NewCodecFactory(scheme).WithoutConversion()
	client := func(gv schema.GroupVersion, path string) (rest.Interface, error) {
		c := rest.CopyConfig(cfg)
		c.GroupVersion, c.APIPath, c.NegotiatedSerializer = &gv, path, codecs
		// JSON: kubeobj's types have no protobuf form.
		c.ContentType, c.AcceptContentTypes = runtime.ContentTypeJSON, runtime.ContentTypeJSON
		if err := rest.SetKubernetesDefaults(c); err != nil {
			return nil, fmt.Errorf("agent: kubernetes client: %w", err)
		}
		r, err := rest.RESTClientFor(c)
		if err != nil {
			return nil, fmt.Errorf("agent: kubernetes client: %w", err)
		}
		return r, nil
	}
	core, err := client(kubeobj.CoreV1, "/api")
	if err != nil {
		return nil, err
	}
	certs, err := client(kubeobj.CertificatesV1, "/apis")
	if err != nil {
		return nil, err
	}
	discovery, err := client(kubeobj.DiscoveryV1, "/apis")
	if err != nil {
		return nil, err
	}
	kzero, err := client(kubeobj.KzeroV1alpha1, "/apis")
	if err != nil {
		return nil, err
	}
	return restKube{core: core, certificates: certs, discovery: discovery, kzero: kzero}, nil
}

func (k restKube) Pods(node string) cache.ListerWatcher {
	return cache.NewListWatchFromClient(k.core, "pods", metav1.NamespaceAll, fields.OneTermEqualSelector("spec.nodeName", node))
}

// Namespaces lists and watches the enrolled namespaces only: the agent
// keeps no copy of the cluster's others, however many there are.
func (k restKube) Namespaces() cache.ListerWatcher {
	return cache.NewFilteredListWatchFromClient(k.core, "namespaces", metav1.NamespaceAll, func(o *metav1.ListOptions) {
		o.LabelSelector = EnrolledSelector
	})
}

// EnrolledSelector selects the enrolled namespaces.
const EnrolledSelector = v1alpha1.EnrolledLabel + "=true"

func (k restKube) ClusterTrustBundle(name string) cache.ListerWatcher {
	return cache.NewListWatchFromClient(k.certificates, "clustertrustbundles", metav1.NamespaceAll, fields.OneTermEqualSelector("metadata.name", name))
}

// AllPods leaves out, by field selector, the pods on their node's network
// (whose address is their node's, shared by all of them) and those that
// have finished (whose address another pod may have been given since).
func (k restKube) AllPods() cache.ListerWatcher {
	return cache.NewFilteredListWatchFromClient(k.core, "pods", metav1.NamespaceAll, func(o *metav1.ListOptions) {
		o.FieldSelector = AllPodsSelector
	})
}

// AllPodsSelector is AllPods' field selector.
const AllPodsSelector = "spec.hostNetwork=false,status.phase!=" + string(kubeobj.PodSucceeded) + ",status.phase!=" + string(kubeobj.PodFailed)

func (k restKube) Services() cache.ListerWatcher {
	return cache.NewListWatchFromClient(k.core, "services", metav1.NamespaceAll, fields.Everything())
}

func (k restKube) EndpointSlices() cache.ListerWatcher {
	return cache.NewFilteredListWatchFromClient(k.discovery, "endpointslices", metav1.NamespaceAll, func(o *metav1.ListOptions) {
		o.LabelSelector = kubeobj.ServiceNameLabel
	})
}

func (k restKube) AccessPolicies() cache.ListerWatcher {
	return cache.NewListWatchFromClient(k.kzero, v1alpha1.Resource, metav1.NamespaceAll, fields.Everything())
}
