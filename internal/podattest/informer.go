package podattest

import (
	"context"
	"errors"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"kzero.dev/kzero/internal/kubeobj"
)

// uidIndex is the name of NodePods' index of pods by UID.
const uidIndex = "uid"

// NodePods is the Pods of one node as the API server sees them: a pod
// informer restricted to spec.nodeName=<node>, indexed by UID. It keeps of
// each pod only what Attest reads. Create it with NewNodePods, call Run
// once, and attest only once HasSynced: until then it knows no pod.
// PodByUID and HasSynced may be called from any goroutine.
type NodePods struct {
	informer cache.SharedIndexInformer
}

// NewNodePods sets up the informer of the pods bound to nodeName; pods
// must list and watch those, and only those (a field selector
// spec.nodeName=<nodeName>, as agent.Kube's Pods). It makes no request
// until Run.
func NewNodePods(pods cache.ListerWatcher, nodeName string) (*NodePods, error) {
	if pods == nil {
		return nil, errors.New("podattest: node pods: pods: required")
	}
	if nodeName == "" {
		return nil, errors.New("podattest: node pods: nodeName: required")
	}
	informer := cache.NewSharedIndexInformer(pods, &kubeobj.Pod{}, 0, cache.Indexers{uidIndex: indexByUID})
	if err := informer.SetTransform(trimPod); err != nil {
		return nil, fmt.Errorf("podattest: node pods: %w", err)
	}
	return &NodePods{informer: informer}, nil
}

// Run watches the node's pods until ctx ends, then stops and returns
// ctx.Err().
func (p *NodePods) Run(ctx context.Context) error {
	p.informer.RunWithContext(ctx)
	return ctx.Err()
}

// HasSynced reports whether the first list of pods has been read.
func (p *NodePods) HasSynced() bool { return p.informer.HasSynced() }

// PodByUID returns the pod of that UID bound to the node.
func (p *NodePods) PodByUID(uid types.UID) (*kubeobj.Pod, bool) {
	return podByUID(p.informer.GetIndexer(), uid)
}

// List returns the node's pods. They are shared: the caller must not
// modify them.
func (p *NodePods) List() []*kubeobj.Pod {
	objs := p.informer.GetStore().List()
	out := make([]*kubeobj.Pod, 0, len(objs))
	for _, o := range objs {
		if pod, ok := o.(*kubeobj.Pod); ok {
			out = append(out, pod)
		}
	}
	return out
}

func podByUID(indexer cache.Indexer, uid types.UID) (*kubeobj.Pod, bool) {
	objs, err := indexer.ByIndex(uidIndex, string(uid))
	if err != nil || len(objs) != 1 {
		return nil, false
	}
	pod, ok := objs[0].(*kubeobj.Pod)
	return pod, ok
}

// indexByUID is the index function of uidIndex.
func indexByUID(obj any) ([]string, error) {
	pod, ok := obj.(*kubeobj.Pod)
	if !ok {
		return nil, fmt.Errorf("podattest: index by UID: %T is not a pod", obj)
	}
	return []string{string(pod.UID)}, nil
}

// trimPod keeps of a pod's metadata what Attest reads (kubeobj.Pod has no
// other field), so that the agent's memory grows little with the node's
// pods: not its labels, other annotations, owners or managed fields.
func trimPod(obj any) (any, error) {
	o, ok := obj.(*kubeobj.Pod)
	if !ok {
		return obj, nil // a tombstone: the informer handles it
	}
	p := &kubeobj.Pod{ObjectMeta: metav1.ObjectMeta{
		Name: o.Name, Namespace: o.Namespace, UID: o.UID,
		ResourceVersion: o.ResourceVersion, DeletionTimestamp: o.DeletionTimestamp,
	}, Spec: o.Spec, Status: o.Status}
	if v, ok := o.Annotations[kubeobj.MirrorPodAnnotationKey]; ok {
		p.Annotations = map[string]string{kubeobj.MirrorPodAnnotationKey: v}
	}
	return p, nil
}
