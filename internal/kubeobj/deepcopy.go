package kubeobj

import "k8s.io/apimachinery/pkg/runtime"

// The deep copies runtime.Object asks for, written out for these few
// types (Kubernetes generates them with deepcopy-gen).

// DeepCopy returns a copy of p that shares nothing with it.
func (p *Pod) DeepCopy() *Pod {
	if p == nil {
		return nil
	}
	out := *p
	out.ObjectMeta = *p.ObjectMeta.DeepCopy()
	out.Status.InitContainerStatuses = copyStatuses(p.Status.InitContainerStatuses)
	out.Status.ContainerStatuses = copyStatuses(p.Status.ContainerStatuses)
	out.Status.EphemeralContainerStatuses = copyStatuses(p.Status.EphemeralContainerStatuses)
	return &out
}

func copyStatuses(in []ContainerStatus) []ContainerStatus {
	if in == nil {
		return nil
	}
	out := make([]ContainerStatus, len(in))
	for i, s := range in {
		out[i] = s
		if s.State.Running != nil {
			out[i].State.Running = &ContainerStateRunning{}
		}
	}
	return out
}

// DeepCopyObject implements runtime.Object.
func (p *Pod) DeepCopyObject() runtime.Object {
	if p == nil {
		return nil // a nil interface, not a nil *Pod
	}
	return p.DeepCopy()
}

// DeepCopy returns a copy of l that shares nothing with it.
func (l *PodList) DeepCopy() *PodList {
	if l == nil {
		return nil
	}
	out := *l
	out.ListMeta = *l.ListMeta.DeepCopy()
	out.Items = copyItems(l.Items, (*Pod).DeepCopy)
	return &out
}

// DeepCopyObject implements runtime.Object.
func (l *PodList) DeepCopyObject() runtime.Object {
	if l == nil {
		return nil // a nil interface, not a nil *PodList
	}
	return l.DeepCopy()
}

// DeepCopy returns a copy of n that shares nothing with it.
func (n *Namespace) DeepCopy() *Namespace {
	if n == nil {
		return nil
	}
	out := *n
	out.ObjectMeta = *n.ObjectMeta.DeepCopy()
	return &out
}

// DeepCopyObject implements runtime.Object.
func (n *Namespace) DeepCopyObject() runtime.Object {
	if n == nil {
		return nil // a nil interface, not a nil *Namespace
	}
	return n.DeepCopy()
}

// DeepCopy returns a copy of l that shares nothing with it.
func (l *NamespaceList) DeepCopy() *NamespaceList {
	if l == nil {
		return nil
	}
	out := *l
	out.ListMeta = *l.ListMeta.DeepCopy()
	out.Items = copyItems(l.Items, (*Namespace).DeepCopy)
	return &out
}

// DeepCopyObject implements runtime.Object.
func (l *NamespaceList) DeepCopyObject() runtime.Object {
	if l == nil {
		return nil // a nil interface, not a nil *NamespaceList
	}
	return l.DeepCopy()
}

// DeepCopy returns a copy of b that shares nothing with it.
func (b *ClusterTrustBundle) DeepCopy() *ClusterTrustBundle {
	if b == nil {
		return nil
	}
	out := *b
	out.ObjectMeta = *b.ObjectMeta.DeepCopy()
	return &out
}

// DeepCopyObject implements runtime.Object.
func (b *ClusterTrustBundle) DeepCopyObject() runtime.Object {
	if b == nil {
		return nil // a nil interface, not a nil *ClusterTrustBundle
	}
	return b.DeepCopy()
}

// DeepCopy returns a copy of l that shares nothing with it.
func (l *ClusterTrustBundleList) DeepCopy() *ClusterTrustBundleList {
	if l == nil {
		return nil
	}
	out := *l
	out.ListMeta = *l.ListMeta.DeepCopy()
	out.Items = copyItems(l.Items, (*ClusterTrustBundle).DeepCopy)
	return &out
}

// DeepCopyObject implements runtime.Object.
func (l *ClusterTrustBundleList) DeepCopyObject() runtime.Object {
	if l == nil {
		return nil // a nil interface, not a nil *ClusterTrustBundleList
	}
	return l.DeepCopy()
}

// copyItems returns a list's items, each copied by copyOne.
func copyItems[T any](in []T, copyOne func(*T) *T) []T {
	if in == nil {
		return nil
	}
	out := make([]T, len(in))
	for i := range in {
		out[i] = *copyOne(&in[i])
	}
	return out
}
