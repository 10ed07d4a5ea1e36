package authority

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// ClusterReader reads the pods and namespaces the agent API decides on.
// LiveCluster reads them from the API server, CachedCluster from
// informers; tests hold them in memory. Implementations are safe for
// concurrent use and return objects the caller must not modify.
type ClusterReader interface {
	// Namespace returns the namespace, or nil and no error when there is
	// none of that name.
	Namespace(ctx context.Context, name string) (*corev1.Namespace, error)
	// Pod returns the pod, or nil and no error when there is none of that
	// name.
	Pod(ctx context.Context, namespace, name string) (*corev1.Pod, error)
	// PodsOnNode returns the pods of namespace bound to node (spec.nodeName),
	// finished or not.
	PodsOnNode(ctx context.Context, namespace, node string) ([]*corev1.Pod, error)
}

// Compile-time checks.
var (
	_ ClusterReader = LiveCluster{}
	_ ClusterReader = (*CachedCluster)(nil)
)

// LiveCluster reads from the API server itself, every call a request.
type LiveCluster struct {
	// Client reaches the API server. Required.
	Client kubernetes.Interface
}

// Namespace gets the namespace.
func (l LiveCluster) Namespace(ctx context.Context, name string) (*corev1.Namespace, error) {
	ns, err := orNil(l.Client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{}))
	if err != nil {
		return nil, fmt.Errorf("authority: get namespace %s: %w", name, err)
	}
	return ns, nil
}

// Pod gets the pod.
func (l LiveCluster) Pod(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	p, err := orNil(l.Client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{}))
	if err != nil {
		return nil, fmt.Errorf("authority: get pod %s/%s: %w", namespace, name, err)
	}
	return p, nil
}

// PodsOnNode lists the pods of namespace with the field selector
// spec.nodeName=node.
func (l LiveCluster) PodsOnNode(ctx context.Context, namespace, node string) ([]*corev1.Pod, error) {
	list, err := l.Client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", node).String(),
	})
	if err != nil {
		return nil, fmt.Errorf("authority: list the pods of namespace %s on node %s: %w", namespace, node, err)
	}
	pods := make([]*corev1.Pod, len(list.Items))
	for i := range list.Items {
		pods[i] = &list.Items[i]
	}
	return pods, nil
}

// podNodeIndex indexes the cached pods by spec.nodeName.
const podNodeIndex = "spec.nodeName"

// CachedCluster reads from informers on every pod and namespace of the
// cluster, pods indexed by node and trimmed to the fields the checks read
// (see trim). Its copies may lag behind the API server, and before the
// informers have synced they miss objects: use it to allow, and read
// LiveCluster before refusing. Create it with NewCachedCluster and call
// Run once.
type CachedCluster struct {
	pods       cache.Indexer
	namespaces corelisters.NamespaceLister
	factory    informers.SharedInformerFactory
}

// NewCachedCluster sets up the informers; they start in Run.
func NewCachedCluster(client kubernetes.Interface) (*CachedCluster, error) {
	factory := informers.NewSharedInformerFactoryWithOptions(client, 10*time.Minute, informers.WithTransform(trim))
	pods := factory.Core().V1().Pods().Informer()
	if err := pods.AddIndexers(cache.Indexers{podNodeIndex: func(obj any) ([]string, error) {
		if p, ok := obj.(*corev1.Pod); ok && p.Spec.NodeName != "" {
			return []string{p.Spec.NodeName}, nil
		}
		return nil, nil
	}}); err != nil {
		return nil, fmt.Errorf("authority: index pods by node: %w", err)
	}
	ns := factory.Core().V1().Namespaces()
	ns.Informer()
	return &CachedCluster{pods: pods.GetIndexer(), namespaces: ns.Lister(), factory: factory}, nil
}

// Run keeps the informers watching until ctx ends, then stops them and
// returns ctx.Err().
func (c *CachedCluster) Run(ctx context.Context) error {
	c.factory.Start(ctx.Done())
	<-ctx.Done()
	c.factory.Shutdown()
	return ctx.Err()
}

// Namespace returns the cached namespace.
func (c *CachedCluster) Namespace(_ context.Context, name string) (*corev1.Namespace, error) {
	return orNil(c.namespaces.Get(name))
}

// Pod returns the cached pod.
func (c *CachedCluster) Pod(_ context.Context, namespace, name string) (*corev1.Pod, error) {
	obj, ok, err := c.pods.GetByKey(namespace + "/" + name)
	if err != nil || !ok {
		return nil, err
	}
	p, _ := obj.(*corev1.Pod)
	return p, nil
}

// PodsOnNode returns the cached pods of namespace on node.
func (c *CachedCluster) PodsOnNode(_ context.Context, namespace, node string) ([]*corev1.Pod, error) {
	objs, err := c.pods.ByIndex(podNodeIndex, node)
	if err != nil {
		return nil, fmt.Errorf("authority: cached pods of node %s: %w", node, err)
	}
	var pods []*corev1.Pod
	for _, obj := range objs {
		if p, ok := obj.(*corev1.Pod); ok && p.Namespace == namespace {
			pods = append(pods, p)
		}
	}
	return pods, nil
}
