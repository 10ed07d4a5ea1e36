package meshresolve_test

import (
	"fmt"
	"net/netip"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// BenchmarkResolve resolves in a cluster of 1,000 services of 5 pods
// each: the work is one service's, whatever the cluster's size.
func BenchmarkResolve(b *testing.B) {
	const services, perService = 1000, 5
	var objs []runtime.Object
	for s := range services {
		name := fmt.Sprintf("svc-%d", s)
		var endpoints []discoveryv1.Endpoint
		for p := range perService {
			ip := fmt.Sprintf("10.1.%d.%d", s/50, (s%50)*perService+p+1)
			pod := pod("shop", fmt.Sprintf("%s-%d", name, p), name, []string{ip})
			objs = append(objs, pod)
			endpoints = append(endpoints, endpoint(ip, "shop", pod.Name))
		}
		objs = append(objs,
			service("shop", name, []string{fmt.Sprintf("10.96.%d.%d", s/250, s%250+1)}, port("http", 80, intstr.FromString("http"))),
			slice("shop", name+"-1", name, discoveryv1.AddressTypeIPv4, endpoints, slicePort("http", 8080)))
	}
	r, _, _ := start(b, nil, objs...)
	for _, c := range []struct{ name, dst string }{
		{"pod address", "10.1.3.7:8080"},
		{"ClusterIP", "10.96.1.7:80"},
		{"unknown address", "8.8.8.8:443"},
	} {
		dst := netip.MustParseAddrPort(c.dst)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := r.Resolve(b.Context(), dst); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("Workload", func(b *testing.B) {
		ip := netip.MustParseAddr("10.1.3.7")
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := r.Workload(ip); !ok {
				b.Fatal("no workload")
			}
		}
	})
}
