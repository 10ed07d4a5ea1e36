// Package meshresolve says where a pod's outbound connection leads, for
// the mesh (internal/mesh's Resolver): to a pod of an enrolled namespace,
// reached through its tunnel endpoint with the SPIFFE ID it must prove,
// or elsewhere, in plain text. It reads the pods, services and
// EndpointSlices of the whole cluster through informers that keep of each
// object only what it resolves with, since every node's agent holds them.
//
// An original destination is resolved thus:
//   - a service's ClusterIP and one of its TCP ports: one of the service's
//     ready endpoints, chosen at random, on the port its EndpointSlice
//     gives under the service port's name, resolved as a pod's address;
//   - a pod's address (a pod on its own network, not finished): the mesh
//     when the pod's namespace is enrolled, and may be (not one that
//     v1alpha1.NeverEnrolled names), and the pod is no static pod's
//     mirror; plain text otherwise, to that address;
//   - anything else: plain text, as addressed.
//
// Each resolution looks up indexes: its work grows with the endpoints of
// one service, never with the cluster.
package meshresolve

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"k8s.io/client-go/tools/cache"

	"kzero.dev/kzero/api/v1alpha1"
	"kzero.dev/kzero/internal/kubeobj"
	"kzero.dev/kzero/internal/mesh"
	"kzero.dev/kzero/internal/policy"
	"kzero.dev/kzero/internal/redirect"
)

// Config configures a Resolver. Fields marked required are checked by
// New.
type Config struct {
	// Pods, Services and EndpointSlices list and watch the cluster's:
	// agent.Kube's AllPods, Services and EndpointSlices. Required.
	Pods, Services, EndpointSlices cache.ListerWatcher
	// TrustDomain of the pods' SPIFFE IDs. Required.
	TrustDomain spiffeid.TrustDomain
	// Enrolled reports whether a namespace is enrolled in kzero (labeled
	// v1alpha1.EnrolledLabel=true). It is asked at each resolution, so a
	// namespace enrolled or let go is seen at once; it must be safe for
	// concurrent use. Required.
	Enrolled func(namespace string) bool
	// OwnNamespace is kzero's namespace, whose pods, as kube-system's,
	// are never in the mesh (v1alpha1.NeverEnrolled); "" means
	// v1alpha1.Namespace.
	OwnNamespace string
	// Rand returns a number in [0, n), to choose among a service's
	// endpoints; nil means math/rand/v2's IntN. It must be safe for
	// concurrent use.
	Rand func(n int) int
}

// ErrNotSynced is returned by Resolve until the first lists of pods,
// services and EndpointSlices have been read: until then every enrolled
// destination would pass through in plain text.
var ErrNotSynced = errors.New("meshresolve: the cluster's pods, services and EndpointSlices are not read yet: try again")

// ErrNoReadyEndpoint is wrapped by the error Resolve returns for a
// service port none of whose endpoints is ready.
var ErrNoReadyEndpoint = errors.New("no ready endpoint")

// Resolver resolves original destinations from its informers' copy of
// the cluster. Create it with New and call Run once; Resolve, Workload and
// HasSynced may be called from any goroutine, before Run too.
type Resolver struct {
	cfg      Config
	pods     cache.SharedIndexInformer
	services cache.SharedIndexInformer
	slices   cache.SharedIndexInformer
	started  atomic.Bool
}

var _ mesh.Resolver = (*Resolver)(nil)

// New checks cfg and sets the informers up; it makes no request until
// Run.
func New(cfg Config) (*Resolver, error) {
	var errs []error
	if cfg.Pods == nil {
		errs = append(errs, errors.New("pods: required"))
	}
	if cfg.Services == nil {
		errs = append(errs, errors.New("services: required"))
	}
	if cfg.EndpointSlices == nil {
		errs = append(errs, errors.New("endpointSlices: required"))
	}
	if cfg.TrustDomain.IsZero() {
		errs = append(errs, errors.New("trustDomain: required"))
	}
	if cfg.Enrolled == nil {
		errs = append(errs, errors.New("enrolled: required"))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("meshresolve: invalid config: %w", errors.Join(errs...))
	}
	if cfg.OwnNamespace == "" {
		cfg.OwnNamespace = v1alpha1.Namespace
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.IntN
	}
	r := &Resolver{
		cfg:      cfg,
		pods:     cache.NewSharedIndexInformer(cfg.Pods, &kubeobj.Pod{}, 0, cache.Indexers{podIPIndex: indexPodIPs}),
		services: cache.NewSharedIndexInformer(cfg.Services, &kubeobj.Service{}, 0, cache.Indexers{clusterIPIndex: indexClusterIPs}),
		slices:   cache.NewSharedIndexInformer(cfg.EndpointSlices, &kubeobj.EndpointSlice{}, 0, cache.Indexers{serviceIndex: indexService}),
	}
	for _, t := range []struct {
		informer  cache.SharedIndexInformer
		transform cache.TransformFunc
	}{{r.pods, trimPod}, {r.services, trimService}, {r.slices, trimSlice}} {
		if err := t.informer.SetTransform(t.transform); err != nil {
			return nil, fmt.Errorf("meshresolve: %w", err)
		}
	}
	return r, nil
}

// Run watches the pods, services and EndpointSlices until ctx ends, then
// returns ctx.Err(). It may be called once.
func (r *Resolver) Run(ctx context.Context) error {
	if !r.started.CompareAndSwap(false, true) {
		return errors.New("meshresolve: Run was called twice: make a new Resolver")
	}
	var wg sync.WaitGroup
	for _, informer := range []cache.SharedIndexInformer{r.pods, r.services, r.slices} {
		wg.Go(func() { informer.RunWithContext(ctx) })
	}
	wg.Wait()
	return ctx.Err()
}

// HasSynced reports whether the first lists of pods, services and
// EndpointSlices have been read.
func (r *Resolver) HasSynced() bool {
	return r.pods.HasSynced() && r.services.HasSynced() && r.slices.HasSynced()
}

// Resolve says where dst, a connection's original destination, leads
// (see the package documentation); an IPv4-mapped IPv6 address is taken
// as the IPv4 one. It makes no request: ctx is not read. It returns
// ErrNotSynced before HasSynced, an error wrapping ErrNoReadyEndpoint for
// a service port without a ready endpoint, and an error for a pod whose
// namespace and service account make no SPIFFE ID.
func (r *Resolver) Resolve(_ context.Context, dst netip.AddrPort) (mesh.Destination, error) {
	if !r.HasSynced() {
		return mesh.Destination{}, ErrNotSynced
	}
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	key := dst.Addr().String()
	if svc, port, ok := r.servicePort(key, dst.Port()); ok {
		return r.resolveService(svc, port, dst.Addr().Is4())
	}
	return r.destination(r.podAt(key), dst)
}

// Workload returns the workload of the pod at ip, a pod on its own
// network that has not finished, enrolled or not. Its Labels are the
// informer's: read them, never write them.
func (r *Resolver) Workload(ip netip.Addr) (policy.Workload, bool) {
	pod := r.podAt(ip.Unmap().String())
	if pod == nil {
		return policy.Workload{}, false
	}
	return policy.Workload{Namespace: pod.Namespace, ServiceAccount: serviceAccount(pod), Labels: pod.Labels}, true
}

// destination is where addr, an address of pod (nil: of none known),
// leads: the pod's tunnel endpoint when it is in the mesh, else addr in
// plain text.
func (r *Resolver) destination(pod *kubeobj.Pod, addr netip.AddrPort) (mesh.Destination, error) {
	if pod == nil || !r.inMesh(pod) {
		return mesh.Destination{Addr: addr}, nil
	}
	id, err := spiffeid.FromSegments(r.cfg.TrustDomain, "ns", pod.Namespace, "sa", serviceAccount(pod))
	if err != nil {
		return mesh.Destination{}, fmt.Errorf("meshresolve: pod %s/%s at %s: namespace and service account make no SPIFFE ID: %w", pod.Namespace, pod.Name, addr, err)
	}
	return mesh.Destination{Mesh: true, Endpoint: netip.AddrPortFrom(addr.Addr(), redirect.TunnelPort), ID: id, Addr: addr}, nil
}

// inMesh reports whether pod has a tunnel endpoint: its namespace is
// enrolled, and may be, and it is no static pod's mirror (static pods get
// no identity).
func (r *Resolver) inMesh(pod *kubeobj.Pod) bool {
	ns := pod.Namespace
	return !v1alpha1.NeverEnrolled(ns, r.cfg.OwnNamespace) && pod.Annotations[kubeobj.MirrorPodAnnotationKey] == "" && r.cfg.Enrolled(ns)
}

// serviceAccount is the pod's service account, the API server's default
// when it names none.
func serviceAccount(pod *kubeobj.Pod) string {
	if pod.Spec.ServiceAccountName == "" {
		return "default"
	}
	return pod.Spec.ServiceAccountName
}
