package meshresolve

import (
	"fmt"
	"iter"
	"net/netip"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kzero.dev/kzero/internal/kubeobj"
	"kzero.dev/kzero/internal/mesh"
)

// clusterIPIndex is the name of the index of services by ClusterIP, each
// in netip.Addr's form; serviceIndex that of EndpointSlices by their
// service, <namespace>/<name>.
const (
	clusterIPIndex = "clusterIP"
	serviceIndex   = "service"
)

// servicePort returns the service at the ClusterIP key (clusterIPIndex's
// form) and its TCP port number port.
func (r *Resolver) servicePort(key string, port uint16) (*kubeobj.Service, kubeobj.ServicePort, bool) {
	objs, err := r.services.GetIndexer().ByIndex(clusterIPIndex, key)
	if err != nil {
		return nil, kubeobj.ServicePort{}, false
	}
	for _, obj := range objs {
		svc, ok := obj.(*kubeobj.Service)
		if !ok {
			continue
		}
		for _, p := range svc.Spec.Ports {
			if p.Port == int32(port) && tcp(p.Protocol) {
				return svc, p, true
			}
		}
	}
	return nil, kubeobj.ServicePort{}, false
}

// resolveService resolves one of the ready endpoints, of the family ipv4
// says, of svc's port sp, chosen at random.
func (r *Resolver) resolveService(svc *kubeobj.Service, sp kubeobj.ServicePort, ipv4 bool) (mesh.Destination, error) {
	family := kubeobj.AddressTypeIPv6
	if ipv4 {
		family = kubeobj.AddressTypeIPv4
	}
	objs, err := r.slices.GetIndexer().ByIndex(serviceIndex, svc.Namespace+"/"+svc.Name)
	if err != nil {
		return mesh.Destination{}, fmt.Errorf("meshresolve: service %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	// ByIndex's order varies from call to call: sorted by name, the
	// slices number their endpoints alike each time, for Rand to choose.
	slices.SortFunc(objs, byName)
	n := 0
	for range readyEndpoints(objs, family, sp.Name) {
		n++
	}
	if n == 0 {
		return mesh.Destination{}, fmt.Errorf("meshresolve: service %s/%s port %d: %w: see which of its pods are ready with kubectl get endpointslices -n %s -l %s=%s",
			svc.Namespace, svc.Name, sp.Port, ErrNoReadyEndpoint, svc.Namespace, kubeobj.ServiceNameLabel, svc.Name)
	}
	k := r.cfg.Rand(n)
	for e := range readyEndpoints(objs, family, sp.Name) {
		if k == 0 {
			return r.destination(r.podOf(e.pod, e.addr.Addr()), e.addr)
		}
		k--
	}
	// Only a Rand outside [0, n) gets here: both loops read objs, whose
	// objects the informer replaces but never changes.
	return mesh.Destination{}, fmt.Errorf("meshresolve: service %s/%s port %d: Rand(%d) chose no endpoint", svc.Namespace, svc.Name, sp.Port, n)
}

// byName orders EndpointSlices by name.
func byName(a, b any) int {
	sa, _ := a.(*kubeobj.EndpointSlice)
	sb, _ := b.(*kubeobj.EndpointSlice)
	if sa == nil || sb == nil {
		return 0
	}
	return strings.Compare(sa.Name, sb.Name)
}

// endpoint is one ready endpoint of a service port: its address and the
// port its EndpointSlice gives, and the pod it names (nil: none).
type endpoint struct {
	addr netip.AddrPort
	pod  *kubeobj.ObjectReference
}

// readyEndpoints yields the ready endpoints, of the address type family,
// of the EndpointSlices objs, on their TCP port named portName. objs is
// read once per loop, in its order.
func readyEndpoints(objs []any, family kubeobj.AddressType, portName string) iter.Seq[endpoint] {
	return func(yield func(endpoint) bool) {
		for _, obj := range objs {
			slice, ok := obj.(*kubeobj.EndpointSlice)
			if !ok || slice.AddressType != family {
				continue
			}
			port, ok := slicePort(slice, portName)
			if !ok {
				continue
			}
			for i := range slice.Endpoints {
				e := &slice.Endpoints[i]
				if !ready(e) || len(e.Addresses) == 0 {
					continue
				}
				a, err := netip.ParseAddr(e.Addresses[0]) // the controller's endpoints have one
				if err != nil {
					continue
				}
				if !yield(endpoint{addr: netip.AddrPortFrom(a.Unmap(), port), pod: e.TargetRef}) {
					return
				}
			}
		}
	}
}

// ready reports whether e takes traffic: ready, or not said otherwise.
func ready(e *kubeobj.Endpoint) bool { return e.Conditions.Ready == nil || *e.Conditions.Ready }

// slicePort returns the number of the slice's TCP port named name.
func slicePort(slice *kubeobj.EndpointSlice, name string) (uint16, bool) {
	for _, p := range slice.Ports {
		n := ""
		if p.Name != nil {
			n = *p.Name
		}
		if n == name && p.Port != nil && *p.Port > 0 && *p.Port <= 65535 && (p.Protocol == nil || tcp(*p.Protocol)) {
			return uint16(*p.Port), true
		}
	}
	return 0, false
}

// tcp reports whether p is TCP, the default.
func tcp(p kubeobj.Protocol) bool { return p == "" || p == kubeobj.ProtocolTCP }

// indexClusterIPs is the index function of clusterIPIndex: a service's
// ClusterIPs, none for a headless or ExternalName one.
func indexClusterIPs(obj any) ([]string, error) {
	svc, ok := obj.(*kubeobj.Service)
	if !ok {
		return nil, fmt.Errorf("meshresolve: index by ClusterIP: %T is not a service", obj)
	}
	ips := clusterIPs(svc)
	return addrKeys(len(ips), func(i int) string { return ips[i] }), nil
}

// clusterIPs are the service's virtual addresses: none for a headless or
// ExternalName service.
func clusterIPs(svc *kubeobj.Service) []string {
	switch {
	case svc.Spec.Type == kubeobj.ServiceTypeExternalName, svc.Spec.ClusterIP == kubeobj.ClusterIPNone:
		return nil
	case len(svc.Spec.ClusterIPs) == 0 && svc.Spec.ClusterIP != "":
		return []string{svc.Spec.ClusterIP}
	}
	return svc.Spec.ClusterIPs
}

// indexService is the index function of serviceIndex: the service an
// EndpointSlice names, none if it names none.
func indexService(obj any) ([]string, error) {
	slice, ok := obj.(*kubeobj.EndpointSlice)
	if !ok {
		return nil, fmt.Errorf("meshresolve: index by service: %T is not an EndpointSlice", obj)
	}
	name := slice.Labels[kubeobj.ServiceNameLabel]
	if name == "" {
		return nil, nil
	}
	return []string{slice.Namespace + "/" + name}, nil
}

// trimService keeps of a service what the resolver reads: who it is, its
// ClusterIPs and its TCP ports' names and numbers; of a headless or
// ExternalName service, who it is.
func trimService(obj any) (any, error) {
	o, ok := obj.(*kubeobj.Service)
	if !ok {
		return obj, nil // a tombstone: the informer handles it
	}
	s := &kubeobj.Service{ObjectMeta: metav1.ObjectMeta{Name: o.Name, Namespace: o.Namespace, ResourceVersion: o.ResourceVersion}}
	ips := clusterIPs(o)
	if len(ips) == 0 {
		return s, nil
	}
	s.Spec.ClusterIPs = ips
	for _, p := range o.Spec.Ports {
		if tcp(p.Protocol) {
			s.Spec.Ports = append(s.Spec.Ports, kubeobj.ServicePort{Name: p.Name, Port: p.Port})
		}
	}
	return s, nil
}

// trimSlice keeps of an EndpointSlice what the resolver reads: who it is
// and its service, its address type, its ready endpoints' addresses and
// pods, and its TCP ports; of an FQDN slice, who it is.
func trimSlice(obj any) (any, error) {
	o, ok := obj.(*kubeobj.EndpointSlice)
	if !ok {
		return obj, nil // a tombstone: the informer handles it
	}
	s := &kubeobj.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: o.Name, Namespace: o.Namespace, ResourceVersion: o.ResourceVersion}, AddressType: o.AddressType}
	if name, ok := o.Labels[kubeobj.ServiceNameLabel]; ok {
		s.Labels = map[string]string{kubeobj.ServiceNameLabel: name}
	}
	if o.AddressType != kubeobj.AddressTypeIPv4 && o.AddressType != kubeobj.AddressTypeIPv6 {
		return s, nil
	}
	for _, e := range o.Endpoints {
		if !ready(&e) {
			continue
		}
		t := kubeobj.Endpoint{Addresses: e.Addresses}
		if e.TargetRef != nil && e.TargetRef.Kind == "Pod" {
			t.TargetRef = &kubeobj.ObjectReference{Kind: "Pod", Namespace: e.TargetRef.Namespace, Name: e.TargetRef.Name}
		}
		s.Endpoints = append(s.Endpoints, t)
	}
	for _, p := range o.Ports {
		if p.Protocol == nil || tcp(*p.Protocol) {
			s.Ports = append(s.Ports, kubeobj.EndpointPort{Name: p.Name, Port: p.Port})
		}
	}
	return s, nil
}
