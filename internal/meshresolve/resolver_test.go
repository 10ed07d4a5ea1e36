package meshresolve_test

import (
	"context"
	"errors"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"

	"kzero.dev/kzero/internal/kubeobj"
	"kzero.dev/kzero/internal/kubeobj/kubeobjtest"
	"kzero.dev/kzero/internal/mesh"
	"kzero.dev/kzero/internal/meshresolve"
	"kzero.dev/kzero/internal/policy"
)

var td = spiffeid.RequireTrustDomainFromString("cluster.local")

// kube is the ListerWatchers of agent.Kube the resolver reads, over a fake
// clientset: a test double of the API server (kubeobjtest's), handing out
// kubeobj's types as the agent's REST clients decode them. Its pods have
// no field selector, where agent.Kube's AllPods has one: the resolver
// must not rely on it.
type kube struct{ c kubernetes.Interface }

func (k kube) pods() cache.ListerWatcher {
	pods := k.c.CoreV1().Pods("")
	return kubeobjtest.ListWatch(k.c, pods.List, pods.Watch, nil)
}

func (k kube) services() cache.ListerWatcher {
	services := k.c.CoreV1().Services("")
	return kubeobjtest.ListWatch(k.c, services.List, services.Watch, nil)
}

func (k kube) endpointSlices() cache.ListerWatcher {
	slices := k.c.DiscoveryV1().EndpointSlices("")
	return kubeobjtest.ListWatch(k.c, slices.List, slices.Watch, func(o *metav1.ListOptions) {
		o.LabelSelector = kubeobj.ServiceNameLabel
	})
}

// namespaces is the Enrolled function's set, which a test changes.
type namespaces struct {
	mu       sync.Mutex
	enrolled map[string]bool
}

func enrol(names ...string) *namespaces {
	n := &namespaces{enrolled: map[string]bool{}}
	for _, name := range names {
		n.enrolled[name] = true
	}
	return n
}

func (n *namespaces) Enrolled(ns string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.enrolled[ns]
}

func (n *namespaces) letGo(ns string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.enrolled, ns)
}

// start runs a Resolver of objs until the test ends, once it has synced.
// kube-system and kzero-system are enrolled too: NeverEnrolled must win.
func start(t testing.TB, rnd func(int) int, objs ...runtime.Object) (*meshresolve.Resolver, *fake.Clientset, *namespaces) {
	t.Helper()
	c := fake.NewClientset(objs...)
	ns := enrol("shop", "kube-system", "kzero-system")
	k := kube{c}
	r, err := meshresolve.New(meshresolve.Config{
		Pods: k.pods(), Services: k.services(), EndpointSlices: k.endpointSlices(),
		TrustDomain: td, Enrolled: ns.Enrolled, Rand: rnd,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
	})
	if !cache.WaitForCacheSync(t.Context().Done(), r.HasSynced) {
		t.Fatal("the resolver did not sync")
	}
	return r, c, ns
}

var created = time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)

// pod is a running pod at ips (the first its status.podIP).
func pod(ns, name, sa string, ips []string, opts ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, UID: k8stypes.UID("uid-" + ns + "-" + name),
			CreationTimestamp: metav1.NewTime(created), Labels: map[string]string{"app": name}},
		Spec:   corev1.PodSpec{NodeName: "node-a", ServiceAccountName: sa, Containers: []corev1.Container{{Name: "app"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, HostIP: "192.168.0.2"},
	}
	for i, ip := range ips {
		if i == 0 {
			p.Status.PodIP = ip
		}
		p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip})
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func hostNetwork(p *corev1.Pod) { p.Spec.HostNetwork = true }

func phase(ph corev1.PodPhase) func(*corev1.Pod) {
	return func(p *corev1.Pod) { p.Status.Phase = ph }
}

func terminating(p *corev1.Pod) {
	deleted := metav1.NewTime(created.Add(time.Hour))
	p.DeletionTimestamp = &deleted
}

func createdAt(d time.Duration) func(*corev1.Pod) {
	return func(p *corev1.Pod) { p.CreationTimestamp = metav1.NewTime(created.Add(d)) }
}

func mirror(p *corev1.Pod) { p.Annotations = map[string]string{corev1.MirrorPodAnnotationKey: "hash"} }

// service is a ClusterIP service at clusterIPs with ports.
func service(ns, name string, clusterIPs []string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: clusterIPs[0], ClusterIPs: clusterIPs,
			Selector: map[string]string{"app": name}, Ports: ports},
	}
}

func port(name string, p int32, target intstr.IntOrString) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Protocol: corev1.ProtocolTCP, Port: p, TargetPort: target}
}

// slice is an EndpointSlice of service svc: endpoints on ports.
func slice(ns, name, svc string, family discoveryv1.AddressType, endpoints []discoveryv1.Endpoint, ports ...discoveryv1.EndpointPort) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: family, Endpoints: endpoints, Ports: ports,
	}
}

// endpoint is a ready endpoint at ip of the pod ns/name ("": of none).
func endpoint(ip, ns, name string) discoveryv1.Endpoint {
	e := discoveryv1.Endpoint{Addresses: []string{ip},
		Conditions: discoveryv1.EndpointConditions{Ready: new(true), Serving: new(true), Terminating: new(false)}}
	if name != "" {
		e.TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: name}
	}
	return e
}

func notReady(e discoveryv1.Endpoint) discoveryv1.Endpoint {
	e.Conditions = discoveryv1.EndpointConditions{Ready: new(false), Serving: new(false), Terminating: new(true)}
	return e
}

func slicePort(name string, p int32) discoveryv1.EndpointPort {
	return discoveryv1.EndpointPort{Name: new(name), Protocol: new(corev1.ProtocolTCP), Port: new(p)}
}

// cluster is the cluster most tests resolve in: shop is enrolled, legacy
// is not.
func cluster() []runtime.Object {
	return []runtime.Object{
		pod("shop", "web-0", "web", []string{"10.0.0.7", "fd00::7"}),
		pod("shop", "web-1", "", []string{"10.0.0.8"}),
		pod("shop", "web-2", "web", []string{"10.0.0.9"}),
		pod("legacy", "db-0", "db", []string{"10.0.1.5"}),
		pod("kube-system", "coredns-0", "coredns", []string{"10.0.2.2"}),
		pod("kzero-system", "kzero-authority-0", "kzero-authority", []string{"10.0.2.3"}),
		pod("shop", "node-exporter", "exporter", []string{"192.168.0.2"}, hostNetwork),
		pod("shop", "static-web", "web", []string{"10.0.0.20"}, mirror),
		// 10.0.3.3 was a finished job's, 10.0.3.4 a terminating pod's,
		// 10.0.3.5 a pod's whose deletion is not seen yet.
		pod("shop", "job", "job", []string{"10.0.3.3"}, phase(corev1.PodSucceeded)),
		pod("shop", "after-job", "after-job", []string{"10.0.3.3"}),
		pod("shop", "leaving", "leaving", []string{"10.0.3.4"}, terminating),
		pod("shop", "arriving", "arriving", []string{"10.0.3.4"}, phase(corev1.PodPending)),
		pod("shop", "stale", "stale", []string{"10.0.3.5"}),
		pod("shop", "fresh", "fresh", []string{"10.0.3.5"}, createdAt(time.Minute)),

		service("shop", "web", []string{"10.96.0.10", "fd00:96::10"},
			port("http", 80, intstr.FromString("http")), port("metrics", 9090, intstr.FromInt32(9091))),
		slice("shop", "web-v4", "web", discoveryv1.AddressTypeIPv4,
			[]discoveryv1.Endpoint{endpoint("10.0.0.7", "shop", "web-0"), notReady(endpoint("10.0.0.9", "shop", "web-2"))},
			slicePort("http", 8080), slicePort("metrics", 9091)),
		slice("shop", "web-v6", "web", discoveryv1.AddressTypeIPv6,
			[]discoveryv1.Endpoint{endpoint("fd00::7", "shop", "web-0")}, slicePort("http", 8080)),
		service("shop", "down", []string{"10.96.0.11"}, port("", 80, intstr.FromInt32(8080))),
		slice("shop", "down-1", "down", discoveryv1.AddressTypeIPv4,
			[]discoveryv1.Endpoint{notReady(endpoint("10.0.0.9", "shop", "web-2"))}, slicePort("", 8080)),
		service("legacy", "db", []string{"10.96.0.12"}, port("", 5432, intstr.FromInt32(5432))),
		slice("legacy", "db-1", "db", discoveryv1.AddressTypeIPv4, []discoveryv1.Endpoint{endpoint("10.0.1.5", "legacy", "db-0")}, slicePort("", 5432)),
		service("shop", "pinned", []string{"10.96.0.13"}, port("", 80, intstr.FromInt32(8080))),
		slice("shop", "pinned-1", "pinned", discoveryv1.AddressTypeIPv4, []discoveryv1.Endpoint{endpoint("10.0.3.5", "shop", "stale")}, slicePort("", 8080)),
		service("shop", "external", []string{"203.0.113.9"}, port("", 80, intstr.FromInt32(80))),
		slice("shop", "external-1", "external", discoveryv1.AddressTypeIPv4, []discoveryv1.Endpoint{endpoint("203.0.113.9", "", "")}, slicePort("", 80)),
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "headless", Namespace: "shop"},
			Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Ports: []corev1.ServicePort{port("", 80, intstr.FromInt32(8080))}}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "elsewhere", Namespace: "shop"},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "example.com"}},
	}
}

func meshTo(ns, sa, ip string, p uint16) mesh.Destination {
	addr := netip.MustParseAddr(ip)
	return mesh.Destination{Mesh: true, Endpoint: netip.AddrPortFrom(addr, 15008),
		ID: spiffeid.RequireFromSegments(td, "ns", ns, "sa", sa), Addr: netip.AddrPortFrom(addr, p)}
}

func plain(addr string) mesh.Destination {
	return mesh.Destination{Addr: netip.MustParseAddrPort(addr)}
}

func TestResolve(t *testing.T) {
	r, _, _ := start(t, func(n int) int { return 0 }, cluster()...)
	for _, c := range []struct {
		name, dst string
		want      mesh.Destination
		err       string
	}{
		{name: "pod address", dst: "10.0.0.7:8080", want: meshTo("shop", "web", "10.0.0.7", 8080)},
		{name: "pod IPv6 address", dst: "[fd00::7]:8080", want: meshTo("shop", "web", "fd00::7", 8080)},
		{name: "IPv4-mapped pod address", dst: "[::ffff:10.0.0.7]:8080", want: meshTo("shop", "web", "10.0.0.7", 8080)},
		{name: "pod without a service account", dst: "10.0.0.8:80", want: meshTo("shop", "default", "10.0.0.8", 80)},
		{name: "ClusterIP to the endpoint's named target port", dst: "10.96.0.10:80", want: meshTo("shop", "web", "10.0.0.7", 8080)},
		{name: "ClusterIP's second port", dst: "10.96.0.10:9090", want: meshTo("shop", "web", "10.0.0.7", 9091)},
		{name: "IPv6 ClusterIP to an IPv6 endpoint", dst: "[fd00:96::10]:80", want: meshTo("shop", "web", "fd00::7", 8080)},
		{name: "ClusterIP on a port it has not", dst: "10.96.0.10:443", want: plain("10.96.0.10:443")},
		{name: "pod of a namespace not enrolled", dst: "10.0.1.5:5432", want: plain("10.0.1.5:5432")},
		{name: "ClusterIP to a pod of a namespace not enrolled", dst: "10.96.0.12:5432", want: plain("10.0.1.5:5432")},
		{name: "ClusterIP to an endpoint that is no pod", dst: "203.0.113.9:80", want: plain("203.0.113.9:80")},
		{name: "kube-system, enrolled or not", dst: "10.0.2.2:53", want: plain("10.0.2.2:53")},
		{name: "kzero's namespace, enrolled or not", dst: "10.0.2.3:8443", want: plain("10.0.2.3:8443")},
		{name: "pod on its node's network", dst: "192.168.0.2:9100", want: plain("192.168.0.2:9100")},
		{name: "static pod's mirror", dst: "10.0.0.20:80", want: plain("10.0.0.20:80")},
		{name: "unknown address", dst: "8.8.8.8:443", want: plain("8.8.8.8:443")},
		{name: "address of a finished pod and a running one", dst: "10.0.3.3:80", want: meshTo("shop", "after-job", "10.0.3.3", 80)},
		{name: "address of a terminating pod and a starting one", dst: "10.0.3.4:80", want: meshTo("shop", "arriving", "10.0.3.4", 80)},
		{name: "address of two running pods: the newer", dst: "10.0.3.5:80", want: meshTo("shop", "fresh", "10.0.3.5", 80)},
		{name: "endpoint of two running pods: the one it names", dst: "10.96.0.13:80", want: meshTo("shop", "stale", "10.0.3.5", 8080)},
		{name: "no ready endpoint", dst: "10.96.0.11:80",
			err: "meshresolve: service shop/down port 80: no ready endpoint: see which of its pods are ready with kubectl get endpointslices -n shop -l kubernetes.io/service-name=down"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := r.Resolve(t.Context(), netip.MustParseAddrPort(c.dst))
			if c.err != "" {
				if err == nil || err.Error() != c.err {
					t.Fatalf("Resolve(%s) = %+v, %v; want error %q", c.dst, got, err, c.err)
				}
				if !errors.Is(err, meshresolve.ErrNoReadyEndpoint) {
					t.Errorf("Resolve(%s)'s error does not wrap ErrNoReadyEndpoint", c.dst)
				}
				return
			}
			if err != nil || got != c.want {
				t.Errorf("Resolve(%s) = %+v, %v; want %+v", c.dst, got, err, c.want)
			}
		})
	}
}

func TestWorkload(t *testing.T) {
	r, _, _ := start(t, nil, cluster()...)
	for _, c := range []struct {
		name, ip string
		want     policy.Workload
		ok       bool
	}{
		{"pod", "10.0.0.7", policy.Workload{Namespace: "shop", ServiceAccount: "web", Labels: map[string]string{"app": "web-0"}}, true},
		{"pod by its IPv6 address", "fd00::7", policy.Workload{Namespace: "shop", ServiceAccount: "web", Labels: map[string]string{"app": "web-0"}}, true},
		{"pod without a service account", "10.0.0.8", policy.Workload{Namespace: "shop", ServiceAccount: "default", Labels: map[string]string{"app": "web-1"}}, true},
		{"pod of a namespace not enrolled", "10.0.1.5", policy.Workload{Namespace: "legacy", ServiceAccount: "db", Labels: map[string]string{"app": "db-0"}}, true},
		{"address of a finished pod and a running one", "10.0.3.3", policy.Workload{Namespace: "shop", ServiceAccount: "after-job", Labels: map[string]string{"app": "after-job"}}, true},
		{"pod on its node's network", "192.168.0.2", policy.Workload{}, false},
		{"ClusterIP", "10.96.0.10", policy.Workload{}, false},
		{"unknown address", "8.8.8.8", policy.Workload{}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, ok := r.Workload(netip.MustParseAddr(c.ip))
			if ok != c.ok || got.Namespace != c.want.Namespace || got.ServiceAccount != c.want.ServiceAccount || !maps.Equal(got.Labels, c.want.Labels) {
				t.Errorf("Workload(%s) = %+v, %t; want %+v, %t", c.ip, got, ok, c.want, c.ok)
			}
		})
	}
}

// What changes is seen: a namespace let go at once (Enrolled is asked each
// time), the API server's changes once the informers have them.
func TestResolveSeesChanges(t *testing.T) {
	r, c, namespaces := start(t, func(n int) int { return n - 1 }, cluster()...)
	resolves := func(dst string, want mesh.Destination) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			got, err := r.Resolve(t.Context(), netip.MustParseAddrPort(dst))
			if err == nil && got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("Resolve(%s) = %+v, %v; want %+v", dst, got, err, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	resolves("10.96.0.10:80", meshTo("shop", "web", "10.0.0.7", 8080))

	// A second endpoint becomes ready: Rand, n-1 here, chooses it.
	ready := slice("shop", "web-v4", "web", discoveryv1.AddressTypeIPv4,
		[]discoveryv1.Endpoint{endpoint("10.0.0.7", "shop", "web-0"), endpoint("10.0.0.9", "shop", "web-2")},
		slicePort("http", 8080), slicePort("metrics", 9091))
	if _, err := c.DiscoveryV1().EndpointSlices("shop").Update(t.Context(), ready, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	resolves("10.96.0.10:80", meshTo("shop", "web", "10.0.0.9", 8080))

	if err := c.CoreV1().Pods("shop").Delete(t.Context(), "web-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	resolves("10.0.0.7:8080", plain("10.0.0.7:8080"))

	if err := c.CoreV1().Pods("shop").Delete(t.Context(), "after-job", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	resolves("10.0.3.3:80", plain("10.0.3.3:80")) // the finished job holds it no more

	namespaces.letGo("shop")
	if got, err := r.Resolve(t.Context(), netip.MustParseAddrPort("10.0.0.8:80")); err != nil || got != plain("10.0.0.8:80") {
		t.Errorf("Resolve of a pod of a namespace let go = %+v, %v; want plain text", got, err)
	}
	resolves("10.96.0.10:80", plain("10.0.0.9:8080"))
}

// Resolve spreads a service's connections over its ready endpoints, as
// Rand chooses.
func TestResolveSpreads(t *testing.T) {
	var asked []int
	next := 0
	objs := append(cluster(), slice("shop", "web-v4-2", "web", discoveryv1.AddressTypeIPv4,
		[]discoveryv1.Endpoint{endpoint("10.0.0.8", "shop", "web-1")}, slicePort("http", 8080)))
	r, _, _ := start(t, func(n int) int {
		asked = append(asked, n)
		next = (next + 1) % n
		return next
	}, objs...)
	seen := map[netip.AddrPort]int{}
	for range 4 {
		d, err := r.Resolve(t.Context(), netip.MustParseAddrPort("10.96.0.10:80"))
		if err != nil {
			t.Fatal(err)
		}
		seen[d.Addr]++
	}
	if want := map[netip.AddrPort]int{netip.MustParseAddrPort("10.0.0.7:8080"): 2, netip.MustParseAddrPort("10.0.0.8:8080"): 2}; !maps.Equal(seen, want) {
		t.Errorf("Resolve chose %v, want %v", seen, want)
	}
	if !slices.Equal(asked, []int{2, 2, 2, 2}) {
		t.Errorf("Rand was asked for %v, want the 2 ready endpoints each time", asked)
	}
}

// Math's Rand, the default, spreads too.
func TestResolveSpreadsAtRandom(t *testing.T) {
	objs := append(cluster(), slice("shop", "web-v4-2", "web", discoveryv1.AddressTypeIPv4,
		[]discoveryv1.Endpoint{endpoint("10.0.0.8", "shop", "web-1")}, slicePort("http", 8080)))
	r, _, _ := start(t, nil, objs...)
	seen := map[netip.AddrPort]bool{}
	for i := 0; i < 200 && len(seen) < 2; i++ { // both within 200 but once in 2^199
		d, err := r.Resolve(t.Context(), netip.MustParseAddrPort("10.96.0.10:80"))
		if err != nil {
			t.Fatal(err)
		}
		seen[d.Addr] = true
	}
	if len(seen) != 2 {
		t.Errorf("200 resolutions chose only %v", seen)
	}
}

// Until it has read the cluster, Resolve refuses rather than let an
// enrolled destination pass through in plain text.
func TestResolveBeforeSync(t *testing.T) {
	k := kube{fake.NewClientset(cluster()...)}
	r, err := meshresolve.New(meshresolve.Config{Pods: k.pods(), Services: k.services(), EndpointSlices: k.endpointSlices(),
		TrustDomain: td, Enrolled: enrol("shop").Enrolled})
	if err != nil {
		t.Fatal(err)
	}
	if r.HasSynced() {
		t.Error("HasSynced before Run")
	}
	if got, err := r.Resolve(t.Context(), netip.MustParseAddrPort("10.0.0.7:8080")); !errors.Is(err, meshresolve.ErrNotSynced) {
		t.Errorf("Resolve before Run = %+v, %v; want ErrNotSynced", got, err)
	}
	if got, ok := r.Workload(netip.MustParseAddr("10.0.0.7")); ok {
		t.Errorf("Workload before Run = %+v", got)
	}
}

func TestRunOnce(t *testing.T) {
	r, _, _ := start(t, nil)
	if err := r.Run(t.Context()); err == nil || err.Error() != "meshresolve: Run was called twice: make a new Resolver" {
		t.Errorf("a second Run: %v", err)
	}
}

func TestNewChecksTheConfig(t *testing.T) {
	_, err := meshresolve.New(meshresolve.Config{})
	want := "meshresolve: invalid config: pods: required\nservices: required\nendpointSlices: required\ntrustDomain: required\nenrolled: required"
	if err == nil || err.Error() != want {
		t.Errorf("New of an empty config: %v, want %q", err, want)
	}
}
