package meshresolve

import (
	"fmt"
	"net/netip"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kzero.dev/kzero/internal/kubeobj"
)

// podIPIndex is the name of the index of pods by address, each in
// netip.Addr's form.
const podIPIndex = "ip"

// podAt returns the pod at the address key (podIPIndex's form), nil if
// none. Several pods may hold one address for a while (one finishing, or
// deleted unseen, as another starts): the likeliest holder wins.
func (r *Resolver) podAt(key string) *kubeobj.Pod {
	objs, err := r.pods.GetIndexer().ByIndex(podIPIndex, key)
	if err != nil {
		return nil
	}
	var best *kubeobj.Pod
	for _, obj := range objs {
		if pod, ok := obj.(*kubeobj.Pod); ok && rank(pod) > 0 && (best == nil || before(pod, best)) {
			best = pod
		}
	}
	return best
}

// podOf returns the pod at addr that ref, an endpoint's target, names
// when it names a pod there, else the pod podAt finds.
func (r *Resolver) podOf(ref *kubeobj.ObjectReference, addr netip.Addr) *kubeobj.Pod {
	if ref != nil && ref.Kind == "Pod" {
		obj, ok, err := r.pods.GetIndexer().GetByKey(ref.Namespace + "/" + ref.Name)
		if pod, isPod := obj.(*kubeobj.Pod); err == nil && ok && isPod && rank(pod) > 0 && holds(pod, addr) {
			return pod
		}
	}
	return r.podAt(addr.String())
}

// rank orders the pods that hold one address, the likeliest first: a
// pod not terminating before one that is (whose address is being freed,
// and given to the other once the API server shows it there), then a
// running pod before a starting one. It is 0 for a pod that holds none:
// on its node's network, or finished.
func rank(pod *kubeobj.Pod) int {
	if pod.Spec.HostNetwork {
		return 0
	}
	r := 0
	switch pod.Status.Phase {
	case kubeobj.PodSucceeded, kubeobj.PodFailed:
		return 0
	case kubeobj.PodRunning:
		r = 2
	default: // Pending, or Unknown: its node does not say
		r = 1
	}
	if pod.DeletionTimestamp == nil {
		r += 2
	}
	return r
}

// before reports whether a is likelier than b to hold their address: of
// one rank, the newer pod, whose address the other's deletion has not
// been seen to free; then by name, so that the choice does not vary.
func before(a, b *kubeobj.Pod) bool {
	if ra, rb := rank(a), rank(b); ra != rb {
		return ra > rb
	}
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return b.CreationTimestamp.Before(&a.CreationTimestamp)
	}
	return a.Namespace+"/"+a.Name < b.Namespace+"/"+b.Name
}

// holds reports whether addr is one of pod's addresses.
func holds(pod *kubeobj.Pod, addr netip.Addr) bool {
	for _, ip := range podIPs(pod) {
		if a, err := netip.ParseAddr(ip.IP); err == nil && a.Unmap() == addr {
			return true
		}
	}
	return false
}

// podIPs are the pod's addresses: status.podIPs, or status.podIP when it
// is all there is.
func podIPs(pod *kubeobj.Pod) []kubeobj.PodIP {
	if len(pod.Status.PodIPs) == 0 && pod.Status.PodIP != "" {
		return []kubeobj.PodIP{{IP: pod.Status.PodIP}}
	}
	return pod.Status.PodIPs
}

// indexPodIPs is the index function of podIPIndex: a pod's addresses,
// none for a pod that holds none (rank).
func indexPodIPs(obj any) ([]string, error) {
	pod, ok := obj.(*kubeobj.Pod)
	if !ok {
		return nil, fmt.Errorf("meshresolve: index by address: %T is not a pod", obj)
	}
	if rank(pod) == 0 {
		return nil, nil
	}
	ips := podIPs(pod)
	return addrKeys(len(ips), func(i int) string { return ips[i].IP }), nil
}

// addrKeys returns the n addresses at(i) in netip.Addr's form, leaving
// out what is none.
func addrKeys(n int, at func(i int) string) []string {
	keys := make([]string, 0, n)
	for i := range n {
		if a, err := netip.ParseAddr(at(i)); err == nil {
			keys = append(keys, a.Unmap().String())
		}
	}
	return keys
}

// trimPod keeps of a pod what the resolver reads: who it is, its
// addresses, its labels for Workload and whether it holds its addresses
// (rank); of a pod that holds none, only who it is and why.
func trimPod(obj any) (any, error) {
	o, ok := obj.(*kubeobj.Pod)
	if !ok {
		return obj, nil // a tombstone: the informer handles it
	}
	p := &kubeobj.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: o.Name, Namespace: o.Namespace, ResourceVersion: o.ResourceVersion},
		Spec:       kubeobj.PodSpec{HostNetwork: o.Spec.HostNetwork},
		Status:     kubeobj.PodStatus{Phase: o.Status.Phase},
	}
	if rank(p) == 0 {
		return p, nil
	}
	p.CreationTimestamp, p.DeletionTimestamp, p.Labels = o.CreationTimestamp, o.DeletionTimestamp, o.Labels
	if v, ok := o.Annotations[kubeobj.MirrorPodAnnotationKey]; ok {
		p.Annotations = map[string]string{kubeobj.MirrorPodAnnotationKey: v}
	}
	p.Spec.ServiceAccountName = o.Spec.ServiceAccountName
	p.Status.PodIPs = podIPs(o)
	return p, nil
}
