package kubeobj_test

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/intstr"

	"kzero.dev/kzero/internal/kubeobj"
)

// decode decodes obj, one of k8s.io/api's, from its JSON with
// apimachinery's JSON decoder (case-sensitive, as the agent's REST
// clients'): by the kind and apiVersion it names, into a type of kubeobj's
// scheme.
func decode(t *testing.T, obj runtime.Object) runtime.Object {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := kubeobj.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := serializer.NewCodecFactory(scheme).UniversalDeserializer().Decode(b, nil, nil)
	if err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return out
}

var started = metav1.NewTime(time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC))

// The field names are the API's: k8s.io/api's full objects, as the API
// server writes them, decode into these types with every field they have.
func TestDecodesWhatTheAPIServerWrites(t *testing.T) {
	deleted := metav1.NewTime(started.Add(time.Hour))
	meta := metav1.ObjectMeta{
		Name: "web-0", Namespace: "shop", UID: "5d0c6a2e-7f7b-4b8e-9a59-0b7c1e0f3a21", ResourceVersion: "42",
		DeletionTimestamp: &deleted, Labels: map[string]string{"app": "web"},
		Annotations: map[string]string{corev1.MirrorPodAnnotationKey: "hash"},
	}
	pod := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
		ObjectMeta: meta,
		Spec: corev1.PodSpec{NodeName: "node-a", ServiceAccountName: "web", HostNetwork: true, Containers: []corev1.Container{{Name: "app", Image: "web:1"}},
			Volumes: []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning, HostIP: "192.168.0.2", PodIP: "10.0.0.7", PodIPs: []corev1.PodIP{{IP: "10.0.0.7"}, {IP: "fd00::7"}},
			InitContainerStatuses: []corev1.ContainerStatus{{Name: "init", ContainerID: "containerd://1",
				State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0}}}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "app", ContainerID: "containerd://2", Image: "web:1", Ready: true,
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}}}},
			EphemeralContainerStatuses: []corev1.ContainerStatus{{Name: "debugger",
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}}},
		},
	}
	want := &kubeobj.Pod{
		TypeMeta:   metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
		ObjectMeta: meta,
		Spec:       kubeobj.PodSpec{NodeName: "node-a", ServiceAccountName: "web", HostNetwork: true},
		Status: kubeobj.PodStatus{
			Phase: kubeobj.PodRunning, PodIP: "10.0.0.7", PodIPs: []kubeobj.PodIP{{IP: "10.0.0.7"}, {IP: "fd00::7"}},
			InitContainerStatuses:      []kubeobj.ContainerStatus{{Name: "init", ContainerID: "containerd://1"}},
			ContainerStatuses:          []kubeobj.ContainerStatus{{Name: "app", ContainerID: "containerd://2", State: kubeobj.ContainerState{Running: &kubeobj.ContainerStateRunning{}}}},
			EphemeralContainerStatuses: []kubeobj.ContainerStatus{{Name: "debugger"}},
		},
	}
	if got := decode(t, pod); !equal(got, want) {
		t.Errorf("pod decoded as\n%#v\nwant\n%#v", got, want)
	}
	if got := decode(t, &corev1.PodList{TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"},
		ListMeta: metav1.ListMeta{ResourceVersion: "43"}, Items: []corev1.Pod{*pod}}); !equal(got, &kubeobj.PodList{
		TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"}, ListMeta: metav1.ListMeta{ResourceVersion: "43"},
		Items: []kubeobj.Pod{*want}}) {
		t.Errorf("pod list decoded as %#v", got)
	}

	ns := &corev1.Namespace{TypeMeta: metav1.TypeMeta{Kind: "Namespace", APIVersion: "v1"}, ObjectMeta: meta,
		Spec: corev1.NamespaceSpec{Finalizers: []corev1.FinalizerName{"kubernetes"}}, Status: corev1.NamespaceStatus{Phase: corev1.NamespaceActive}}
	if got := decode(t, ns); !equal(got, &kubeobj.Namespace{TypeMeta: ns.TypeMeta, ObjectMeta: meta}) {
		t.Errorf("namespace decoded as %#v", got)
	}
	if got := decode(t, &corev1.NamespaceList{TypeMeta: metav1.TypeMeta{Kind: "NamespaceList", APIVersion: "v1"}, Items: []corev1.Namespace{*ns}}); !equal(got,
		&kubeobj.NamespaceList{TypeMeta: metav1.TypeMeta{Kind: "NamespaceList", APIVersion: "v1"}, Items: []kubeobj.Namespace{{TypeMeta: ns.TypeMeta, ObjectMeta: meta}}}) {
		t.Errorf("namespace list decoded as %#v", got)
	}

	ctb := &certificatesv1.ClusterTrustBundle{TypeMeta: metav1.TypeMeta{Kind: "ClusterTrustBundle", APIVersion: "certificates.k8s.io/v1"},
		ObjectMeta: metav1.ObjectMeta{Name: "kzero.dev:identity:cluster.local"},
		Spec:       certificatesv1.ClusterTrustBundleSpec{SignerName: "kzero.dev/identity", TrustBundle: "-----BEGIN CERTIFICATE-----\n…"}}
	wantCTB := kubeobj.ClusterTrustBundle{TypeMeta: ctb.TypeMeta, ObjectMeta: ctb.ObjectMeta,
		Spec: kubeobj.ClusterTrustBundleSpec{TrustBundle: "-----BEGIN CERTIFICATE-----\n…"}}
	if got := decode(t, ctb); !equal(got, &wantCTB) {
		t.Errorf("ClusterTrustBundle decoded as %#v", got)
	}
	if got := decode(t, &certificatesv1.ClusterTrustBundleList{TypeMeta: metav1.TypeMeta{Kind: "ClusterTrustBundleList", APIVersion: "certificates.k8s.io/v1"},
		Items: []certificatesv1.ClusterTrustBundle{*ctb}}); !equal(got, &kubeobj.ClusterTrustBundleList{
		TypeMeta: metav1.TypeMeta{Kind: "ClusterTrustBundleList", APIVersion: "certificates.k8s.io/v1"}, Items: []kubeobj.ClusterTrustBundle{wantCTB}}) {
		t.Errorf("ClusterTrustBundle list decoded as %#v", got)
	}

	svc := &corev1.Service{TypeMeta: metav1.TypeMeta{Kind: "Service", APIVersion: "v1"}, ObjectMeta: meta,
		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeClusterIP, ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10", "fd00:96::10"},
			Selector: map[string]string{"app": "web"}, SessionAffinity: corev1.ServiceAffinityNone,
			Ports: []corev1.ServicePort{
				{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromString("http"), AppProtocol: new("http")},
				{Name: "metrics", Protocol: corev1.ProtocolTCP, Port: 9090, TargetPort: intstr.FromInt32(9091), NodePort: 30090},
			},
		},
		Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: "203.0.113.1"}}}}}
	wantSvc := kubeobj.Service{TypeMeta: svc.TypeMeta, ObjectMeta: meta, Spec: kubeobj.ServiceSpec{
		Type: kubeobj.ServiceTypeClusterIP, ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10", "fd00:96::10"},
		Ports: []kubeobj.ServicePort{
			{Name: "http", Protocol: kubeobj.ProtocolTCP, Port: 80, TargetPort: intstr.FromString("http")},
			{Name: "metrics", Protocol: kubeobj.ProtocolTCP, Port: 9090, TargetPort: intstr.FromInt32(9091)},
		},
	}}
	if got := decode(t, svc); !equal(got, &wantSvc) {
		t.Errorf("service decoded as %#v", got)
	}
	if got := decode(t, &corev1.ServiceList{TypeMeta: metav1.TypeMeta{Kind: "ServiceList", APIVersion: "v1"}, Items: []corev1.Service{*svc}}); !equal(got,
		&kubeobj.ServiceList{TypeMeta: metav1.TypeMeta{Kind: "ServiceList", APIVersion: "v1"}, Items: []kubeobj.Service{wantSvc}}) {
		t.Errorf("service list decoded as %#v", got)
	}

	slice := &discoveryv1.EndpointSlice{TypeMeta: metav1.TypeMeta{Kind: "EndpointSlice", APIVersion: "discovery.k8s.io/v1"},
		ObjectMeta:  metav1.ObjectMeta{Name: "web-x7k2p", Namespace: "shop", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:  []string{"10.0.0.7"},
			Conditions: discoveryv1.EndpointConditions{Ready: new(true), Serving: new(true), Terminating: new(false)},
			Hostname:   new("web-0"), NodeName: new("node-a"), Zone: new("zone-a"),
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "shop", Name: "web-0", UID: "5d0c6a2e-7f7b-4b8e-9a59-0b7c1e0f3a21", ResourceVersion: "42"},
			Hints:     &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: "zone-a"}}},
		}, {
			Addresses:  []string{"10.0.0.8"},
			Conditions: discoveryv1.EndpointConditions{Ready: new(false), Serving: new(true), Terminating: new(true)},
		}},
		Ports: []discoveryv1.EndpointPort{{Name: new("http"), Protocol: new(corev1.ProtocolTCP), Port: new(int32(8080)), AppProtocol: new("http")}},
	}
	wantSlice := kubeobj.EndpointSlice{TypeMeta: slice.TypeMeta, ObjectMeta: slice.ObjectMeta, AddressType: kubeobj.AddressTypeIPv4,
		Endpoints: []kubeobj.Endpoint{{
			Addresses:  []string{"10.0.0.7"},
			Conditions: kubeobj.EndpointConditions{Ready: new(true), Serving: new(true), Terminating: new(false)},
			TargetRef:  &kubeobj.ObjectReference{Kind: "Pod", Namespace: "shop", Name: "web-0", UID: "5d0c6a2e-7f7b-4b8e-9a59-0b7c1e0f3a21"},
			NodeName:   new("node-a"),
		}, {
			Addresses:  []string{"10.0.0.8"},
			Conditions: kubeobj.EndpointConditions{Ready: new(false), Serving: new(true), Terminating: new(true)},
		}},
		Ports: []kubeobj.EndpointPort{{Name: new("http"), Protocol: new(kubeobj.ProtocolTCP), Port: new(int32(8080))}},
	}
	if got := decode(t, slice); !equal(got, &wantSlice) {
		t.Errorf("EndpointSlice decoded as %#v", got)
	}
	if got := decode(t, &discoveryv1.EndpointSliceList{TypeMeta: metav1.TypeMeta{Kind: "EndpointSliceList", APIVersion: "discovery.k8s.io/v1"},
		Items: []discoveryv1.EndpointSlice{*slice}}); !equal(got, &kubeobj.EndpointSliceList{
		TypeMeta: metav1.TypeMeta{Kind: "EndpointSliceList", APIVersion: "discovery.k8s.io/v1"}, Items: []kubeobj.EndpointSlice{wantSlice}}) {
		t.Errorf("EndpointSlice list decoded as %#v", got)
	}
	if kubeobj.ServiceNameLabel != discoveryv1.LabelServiceName {
		t.Errorf("ServiceNameLabel is %q, the API's %q", kubeobj.ServiceNameLabel, discoveryv1.LabelServiceName)
	}
}

// equal compares as the API does: times to the second.
func equal(a, b runtime.Object) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return reflect.TypeOf(a) == reflect.TypeOf(b) && string(ja) == string(jb)
}

// A deep copy shares nothing with its original.
func TestDeepCopySharesNothing(t *testing.T) {
	pod := &kubeobj.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-0", Labels: map[string]string{"app": "web"}},
		Status: kubeobj.PodStatus{PodIPs: []kubeobj.PodIP{{IP: "10.0.0.7"}}, ContainerStatuses: []kubeobj.ContainerStatus{{Name: "app",
			State: kubeobj.ContainerState{Running: &kubeobj.ContainerStateRunning{}}}}},
	}
	svc := &kubeobj.Service{ObjectMeta: pod.ObjectMeta, Spec: kubeobj.ServiceSpec{ClusterIPs: []string{"10.96.0.10"},
		Ports: []kubeobj.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}}}
	slice := &kubeobj.EndpointSlice{ObjectMeta: pod.ObjectMeta,
		Endpoints: []kubeobj.Endpoint{{Addresses: []string{"10.0.0.7"},
			Conditions: kubeobj.EndpointConditions{Ready: new(true), Serving: new(true), Terminating: new(false)},
			TargetRef:  &kubeobj.ObjectReference{Kind: "Pod", Name: "web-0"}, NodeName: new("node-a")}},
		Ports: []kubeobj.EndpointPort{{Name: new("http"), Protocol: new(kubeobj.ProtocolTCP), Port: new(int32(8080))}},
	}
	objs := []runtime.Object{
		pod, &kubeobj.PodList{Items: []kubeobj.Pod{*pod}},
		&kubeobj.Namespace{ObjectMeta: pod.ObjectMeta}, &kubeobj.NamespaceList{Items: []kubeobj.Namespace{{ObjectMeta: pod.ObjectMeta}}},
		&kubeobj.ClusterTrustBundle{ObjectMeta: pod.ObjectMeta, Spec: kubeobj.ClusterTrustBundleSpec{TrustBundle: "pem"}},
		&kubeobj.ClusterTrustBundleList{Items: []kubeobj.ClusterTrustBundle{{ObjectMeta: pod.ObjectMeta}}},
		svc, &kubeobj.ServiceList{Items: []kubeobj.Service{*svc}},
		slice, &kubeobj.EndpointSliceList{Items: []kubeobj.EndpointSlice{*slice}},
	}
	for _, obj := range objs {
		before, _ := json.Marshal(obj)
		c := obj.DeepCopyObject()
		if !equal(c, obj) {
			t.Errorf("%T: the copy differs: %#v", obj, c)
		}
		scribble(reflect.ValueOf(c))
		if after, _ := json.Marshal(obj); string(after) != string(before) {
			t.Errorf("%T: writing the copy changed the original:\n%s\nwas\n%s", obj, after, before)
		}
	}
	for _, obj := range []runtime.Object{(*kubeobj.Pod)(nil), (*kubeobj.PodList)(nil), (*kubeobj.Namespace)(nil),
		(*kubeobj.NamespaceList)(nil), (*kubeobj.ClusterTrustBundle)(nil), (*kubeobj.ClusterTrustBundleList)(nil),
		(*kubeobj.Service)(nil), (*kubeobj.ServiceList)(nil), (*kubeobj.EndpointSlice)(nil), (*kubeobj.EndpointSliceList)(nil)} {
		if c := obj.DeepCopyObject(); c != nil {
			t.Errorf("a nil %T's copy is %#v, not a nil runtime.Object", obj, c)
		}
	}
}

// scribble overwrites every string, number, boolean, map entry and time
// reachable from v.
func scribble(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			scribble(v.Elem())
		}
	case reflect.Struct:
		if v.Type() == reflect.TypeOf(metav1.Time{}) {
			v.Set(reflect.ValueOf(metav1.NewTime(time.Unix(1, 0))))
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				scribble(v.Field(i))
			}
		}
	case reflect.Slice:
		for i := range v.Len() {
			scribble(v.Index(i))
		}
	case reflect.Map:
		for _, k := range v.MapKeys() {
			v.SetMapIndex(k, reflect.ValueOf("scribbled"))
		}
	case reflect.String:
		if v.CanSet() {
			v.SetString("scribbled")
		}
	case reflect.Bool:
		if v.CanSet() {
			v.SetBool(!v.Bool())
		}
	case reflect.Int, reflect.Int32, reflect.Int64:
		if v.CanSet() {
			v.SetInt(v.Int() + 1)
		}
	default: // no other kind is reachable from these types
	}
}
