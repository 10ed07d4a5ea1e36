package agent

import (
	"fmt"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// Kube lists and watches what the agent reads from the API server.
type Kube interface {
	// Pods are the pods bound to the node.
	Pods(nodeName string) cache.ListerWatcher
	// Namespaces are every namespace.
	Namespaces() cache.ListerWatcher
	// ClusterTrustBundle is the ClusterTrustBundle of that name.
	ClusterTrustBundle(name string) cache.ListerWatcher
}

// restKube is Kube over two REST clients that know only the core and
// certificates.k8s.io groups: the agent links none of the other API groups
// that a clientset brings, which keeps its memory small.
type restKube struct{ core, certificates rest.Interface }

// NewKube returns the Kube of the API server cfg reaches.
func NewKube(cfg *rest.Config) (Kube, error) {
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := certificatesv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	codecs := serializer.NewCodecFactory(scheme).WithoutConversion()
	client := func(gv schema.GroupVersion, path string) (rest.Interface, error) {
		c := rest.CopyConfig(cfg)
		c.GroupVersion, c.APIPath, c.NegotiatedSerializer = &gv, path, codecs
		c.ContentType = runtime.ContentTypeProtobuf
		c.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
		if err := rest.SetKubernetesDefaults(c); err != nil {
			return nil, fmt.Errorf("agent: kubernetes client: %w", err)
		}
		r, err := rest.RESTClientFor(c)
		if err != nil {
			return nil, fmt.Errorf("agent: kubernetes client: %w", err)
		}
		return r, nil
	}
	core, err := client(corev1.SchemeGroupVersion, "/api")
	if err != nil {
		return nil, err
	}
	certs, err := client(certificatesv1.SchemeGroupVersion, "/apis")
	if err != nil {
		return nil, err
	}
	return restKube{core: core, certificates: certs}, nil
}

func (k restKube) Pods(node string) cache.ListerWatcher {
	return cache.NewListWatchFromClient(k.core, "pods", metav1.NamespaceAll, fields.OneTermEqualSelector("spec.nodeName", node))
}

func (k restKube) Namespaces() cache.ListerWatcher {
	return cache.NewListWatchFromClient(k.core, "namespaces", metav1.NamespaceAll, fields.Everything())
}

func (k restKube) ClusterTrustBundle(name string) cache.ListerWatcher {
	return cache.NewListWatchFromClient(k.certificates, "clustertrustbundles", metav1.NamespaceAll, fields.OneTermEqualSelector("metadata.name", name))
}
