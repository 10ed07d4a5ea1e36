package kubeobj

import (
	"slices"

	"k8s.io/apimachinery/pkg/runtime"
)

// The deep copies runtime.Object asks for, written out for these few
// types (Kubernetes generates them with deepcopy-gen).

// DeepCopy returns a copy of p that shares nothing with it.
func (p *Pod) DeepCopy() *Pod {
	if p == nil {
		return nil
	}
	out := *p
	out.ObjectMeta = *p.ObjectMeta.DeepCopy()
	out.Status.PodIPs = slices.Clone(p.Status.PodIPs)
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

// DeepCopy returns a copy of s that shares nothing with it.
func (s *Service) DeepCopy() *Service {
	if s == nil {
		return nil
	}
	out := *s
	out.ObjectMeta = *s.ObjectMeta.DeepCopy()
	out.Spec.ClusterIPs = slices.Clone(s.Spec.ClusterIPs)
	out.Spec.Ports = slices.Clone(s.Spec.Ports) // values all: IntOrString too
	return &out
}

// DeepCopyObject implements runtime.Object.
func (s *Service) DeepCopyObject() runtime.Object {
	if s == nil {
		return nil // a nil interface, not a nil *Service
	}
	return s.DeepCopy()
}

// DeepCopy returns a copy of l that shares nothing with it.
func (l *ServiceList) DeepCopy() *ServiceList {
	if l == nil {
		return nil
	}
	out := *l
	out.ListMeta = *l.ListMeta.DeepCopy()
	out.Items = copyItems(l.Items, (*Service).DeepCopy)
	return &out
}

// DeepCopyObject implements runtime.Object.
func (l *ServiceList) DeepCopyObject() runtime.Object {
	if l == nil {
		return nil // a nil interface, not a nil *ServiceList
	}
	return l.DeepCopy()
}

// DeepCopy returns a copy of s that shares nothing with it.
func (s *EndpointSlice) DeepCopy() *EndpointSlice {
	if s == nil {
		return nil
	}
	out := *s
	out.ObjectMeta = *s.ObjectMeta.DeepCopy()
	out.Endpoints = copyItems(s.Endpoints, (*Endpoint).DeepCopy)
	out.Ports = copyItems(s.Ports, (*EndpointPort).DeepCopy)
	return &out
}

// DeepCopyObject implements runtime.Object.
func (s *EndpointSlice) DeepCopyObject() runtime.Object {
	if s == nil {
		return nil // a nil interface, not a nil *EndpointSlice
	}
	return s.DeepCopy()
}

// DeepCopy returns a copy of e that shares nothing with it.
func (e *Endpoint) DeepCopy() *Endpoint {
	if e == nil {
		return nil
	}
	out := *e
	out.Addresses = slices.Clone(e.Addresses)
	out.Conditions = EndpointConditions{
		Ready: copyPtr(e.Conditions.Ready), Serving: copyPtr(e.Conditions.Serving), Terminating: copyPtr(e.Conditions.Terminating),
	}
	out.TargetRef = copyPtr(e.TargetRef)
	out.NodeName = copyPtr(e.NodeName)
	return &out
}

// DeepCopy returns a copy of p that shares nothing with it.
func (p *EndpointPort) DeepCopy() *EndpointPort {
	if p == nil {
		return nil
	}
	return &EndpointPort{Name: copyPtr(p.Name), Protocol: copyPtr(p.Protocol), Port: copyPtr(p.Port)}
}

// DeepCopy returns a copy of l that shares nothing with it.
func (l *EndpointSliceList) DeepCopy() *EndpointSliceList {
	if l == nil {
		return nil
	}
	out := *l
	out.ListMeta = *l.ListMeta.DeepCopy()
	out.Items = copyItems(l.Items, (*EndpointSlice).DeepCopy)
	return &out
}

// DeepCopyObject implements runtime.Object.
func (l *EndpointSliceList) DeepCopyObject() runtime.Object {
	if l == nil {
		return nil // a nil interface, not a nil *EndpointSliceList
	}
	return l.DeepCopy()
}

// copyPtr returns a pointer to a copy of *p, or nil; T must hold no
// pointer, slice or map.
func copyPtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
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
