package meshresolve

import (
	"reflect"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/cache"

	"kzero.dev/kzero/internal/kubeobj"
)

// The transforms keep of each object what the resolver reads and no
// more: every node's agent holds the whole cluster's.
func TestTrim(t *testing.T) {
	created, deleted := metav1.NewTime(time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)), metav1.NewTime(time.Date(2026, 12, 2, 11, 0, 0, 0, time.UTC))
	meta := metav1.ObjectMeta{
		Name: "web-0", Namespace: "shop", UID: "u-1", ResourceVersion: "42", CreationTimestamp: created, DeletionTimestamp: &deleted,
		Labels:        map[string]string{"app": "web", kubeobj.ServiceNameLabel: "web"},
		Annotations:   map[string]string{kubeobj.MirrorPodAnnotationKey: "hash", "note": "x"},
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubelet"}},
	}
	who := metav1.ObjectMeta{Name: "web-0", Namespace: "shop", ResourceVersion: "42"}
	running := &kubeobj.Pod{ObjectMeta: meta,
		Spec: kubeobj.PodSpec{NodeName: "node-a", ServiceAccountName: "web"},
		Status: kubeobj.PodStatus{Phase: kubeobj.PodRunning, PodIP: "10.0.0.7",
			ContainerStatuses: []kubeobj.ContainerStatus{{Name: "app", ContainerID: "containerd://1"}}},
	}
	onHost := running.DeepCopy()
	onHost.Spec.HostNetwork = true
	finished := running.DeepCopy()
	finished.Status.Phase = kubeobj.PodSucceeded
	yes, no, tcp, udp := new(true), new(false), new(kubeobj.ProtocolTCP), new(kubeobj.ProtocolUDP)
	for _, c := range []struct {
		name      string
		transform cache.TransformFunc
		in, want  any
	}{
		{"running pod", trimPod, running, &kubeobj.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "web-0", Namespace: "shop", ResourceVersion: "42", CreationTimestamp: created, DeletionTimestamp: &deleted,
				Labels: meta.Labels, Annotations: map[string]string{kubeobj.MirrorPodAnnotationKey: "hash"}},
			Spec:   kubeobj.PodSpec{ServiceAccountName: "web"},
			Status: kubeobj.PodStatus{Phase: kubeobj.PodRunning, PodIPs: []kubeobj.PodIP{{IP: "10.0.0.7"}}},
		}},
		{"pod on its node's network", trimPod, onHost, &kubeobj.Pod{ObjectMeta: who, Spec: kubeobj.PodSpec{HostNetwork: true},
			Status: kubeobj.PodStatus{Phase: kubeobj.PodRunning}}},
		{"finished pod", trimPod, finished, &kubeobj.Pod{ObjectMeta: who, Status: kubeobj.PodStatus{Phase: kubeobj.PodSucceeded}}},
		{"service", trimService, &kubeobj.Service{ObjectMeta: meta, Spec: kubeobj.ServiceSpec{
			Type: kubeobj.ServiceTypeClusterIP, ClusterIP: "10.96.0.10",
			Ports: []kubeobj.ServicePort{
				{Name: "http", Protocol: kubeobj.ProtocolTCP, Port: 80, TargetPort: intstr.FromString("http")},
				{Name: "dns", Protocol: kubeobj.ProtocolUDP, Port: 53, TargetPort: intstr.FromInt32(53)},
			},
		}}, &kubeobj.Service{ObjectMeta: who, Spec: kubeobj.ServiceSpec{ClusterIPs: []string{"10.96.0.10"},
			Ports: []kubeobj.ServicePort{{Name: "http", Port: 80}}}}},
		{"headless service", trimService, &kubeobj.Service{ObjectMeta: meta, Spec: kubeobj.ServiceSpec{ClusterIP: kubeobj.ClusterIPNone,
			Ports: []kubeobj.ServicePort{{Port: 80}}}}, &kubeobj.Service{ObjectMeta: who}},
		{"ExternalName service", trimService, &kubeobj.Service{ObjectMeta: meta, Spec: kubeobj.ServiceSpec{Type: kubeobj.ServiceTypeExternalName,
			Ports: []kubeobj.ServicePort{{Port: 80}}}}, &kubeobj.Service{ObjectMeta: who}},
		{"EndpointSlice", trimSlice, &kubeobj.EndpointSlice{ObjectMeta: meta, AddressType: kubeobj.AddressTypeIPv4,
			Endpoints: []kubeobj.Endpoint{
				{Addresses: []string{"10.0.0.7"}, Conditions: kubeobj.EndpointConditions{Ready: yes, Serving: yes, Terminating: no},
					TargetRef: &kubeobj.ObjectReference{Kind: "Pod", Namespace: "shop", Name: "web-0", UID: "u-1"}, NodeName: new("node-a")},
				{Addresses: []string{"10.0.0.8"}, Conditions: kubeobj.EndpointConditions{Ready: no, Serving: yes, Terminating: yes}},
				{Addresses: []string{"203.0.113.9"}, TargetRef: &kubeobj.ObjectReference{Kind: "Node", Name: "node-a"}},
			},
			Ports: []kubeobj.EndpointPort{{Name: new("http"), Protocol: tcp, Port: new(int32(8080))}, {Name: new("dns"), Protocol: udp, Port: new(int32(53))}},
		}, &kubeobj.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: "web-0", Namespace: "shop", ResourceVersion: "42", Labels: map[string]string{kubeobj.ServiceNameLabel: "web"}},
			AddressType: kubeobj.AddressTypeIPv4,
			Endpoints: []kubeobj.Endpoint{
				{Addresses: []string{"10.0.0.7"}, TargetRef: &kubeobj.ObjectReference{Kind: "Pod", Namespace: "shop", Name: "web-0"}},
				{Addresses: []string{"203.0.113.9"}},
			},
			Ports: []kubeobj.EndpointPort{{Name: new("http"), Port: new(int32(8080))}},
		}},
		{"FQDN EndpointSlice", trimSlice, &kubeobj.EndpointSlice{ObjectMeta: meta, AddressType: kubeobj.AddressTypeFQDN,
			Endpoints: []kubeobj.Endpoint{{Addresses: []string{"example.com"}}}, Ports: []kubeobj.EndpointPort{{Port: new(int32(80))}}},
			&kubeobj.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "web-0", Namespace: "shop", ResourceVersion: "42",
				Labels: map[string]string{kubeobj.ServiceNameLabel: "web"}}, AddressType: kubeobj.AddressTypeFQDN}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := c.transform(c.in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("trimmed to\n %+v\nwant\n %+v", got, c.want)
			}
			tombstone := cache.DeletedFinalStateUnknown{Key: "shop/web-0"}
			if got, _ := c.transform(tombstone); got != tombstone {
				t.Errorf("a tombstone was changed: %v", got)
			}
		})
	}
}

func TestIndexRefusesOtherTypes(t *testing.T) {
	for _, c := range []struct {
		index cache.IndexFunc
		want  string
	}{
		{indexPodIPs, "meshresolve: index by address: *kubeobj.Namespace is not a pod"},
		{indexClusterIPs, "meshresolve: index by ClusterIP: *kubeobj.Namespace is not a service"},
		{indexService, "meshresolve: index by service: *kubeobj.Namespace is not an EndpointSlice"},
	} {
		if _, err := c.index(&kubeobj.Namespace{}); err == nil || err.Error() != c.want {
			t.Errorf("index of a namespace: %v, want %q", err, c.want)
		}
	}
}
