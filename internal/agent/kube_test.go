package agent_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"kzero.dev/kzero/internal/agent"
	"kzero.dev/kzero/internal/kubeobj"
	"kzero.dev/kzero/internal/kubeobj/kubeobjtest"
)

// clientsetKube is agent.Kube over a clientset, for the tests that give
// the agent client-go's fake clientset: a test double of the API server
// (kubeobjtest's), which hands out kubeobj's types, decoded from the JSON
// of the clientset's, as the API server's JSON is decoded by NewKube's
// clients. The fake honours no field selector, and its watches no
// selector at all: the agent must not rely on them.
type clientsetKube struct{ c kubernetes.Interface }

func (k clientsetKube) Pods(node string) cache.ListerWatcher {
	pods := k.c.CoreV1().Pods("")
	return kubeobjtest.ListWatch(k.c, pods.List, pods.Watch, func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", node).String()
	})
}

func (k clientsetKube) Namespaces() cache.ListerWatcher {
	namespaces := k.c.CoreV1().Namespaces()
	return kubeobjtest.ListWatch(k.c, namespaces.List, namespaces.Watch, func(o *metav1.ListOptions) {
		o.LabelSelector = agent.EnrolledSelector
	})
}

func (k clientsetKube) ClusterTrustBundle(name string) cache.ListerWatcher {
	ctbs := k.c.CertificatesV1().ClusterTrustBundles()
	return kubeobjtest.ListWatch(k.c, ctbs.List, ctbs.Watch, func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
	})
}

func (k clientsetKube) AllPods() cache.ListerWatcher {
	pods := k.c.CoreV1().Pods("")
	return kubeobjtest.ListWatch(k.c, pods.List, pods.Watch, func(o *metav1.ListOptions) {
		o.FieldSelector = agent.AllPodsSelector
	})
}

func (k clientsetKube) Services() cache.ListerWatcher {
	services := k.c.CoreV1().Services("")
	return kubeobjtest.ListWatch(k.c, services.List, services.Watch, nil)
}

func (k clientsetKube) EndpointSlices() cache.ListerWatcher {
	slices := k.c.DiscoveryV1().EndpointSlices("")
	return kubeobjtest.ListWatch(k.c, slices.List, slices.Watch, func(o *metav1.ListOptions) {
		o.LabelSelector = kubeobj.ServiceNameLabel
	})
}

// AccessPolicies lists none and watches nothing: the fake clientset does
// not know kzero's types, and the agent's tests here are of the Workload
// API. The mesh's policies are tested on the real cluster (test/e2e).
func (k clientsetKube) AccessPolicies() cache.ListerWatcher {
	return &cache.ListWatch{
		ListWithContextFunc: func(context.Context, metav1.ListOptions) (runtime.Object, error) {
			return &kubeobj.AccessPolicyList{ListMeta: metav1.ListMeta{ResourceVersion: "1"}}, nil
		},
		WatchFuncWithContext: func(context.Context, metav1.ListOptions) (watch.Interface, error) { return watch.NewFake(), nil },
	}
}

var _ agent.Kube = clientsetKube{}

// NewKube's lists ask the API server for the node's pods, the enrolled
// namespaces, the one ClusterTrustBundle and, for the mesh, the pods of
// every node, the services and the EndpointSlices, in JSON, and decode
// what it answers. The API server here is a stand-in that records the
// requests: the real one serves the agent in the end-to-end test.
func TestNewKubeAsksForWhatTheAgentReads(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.URL.Path+"?"+r.URL.Query().Get("fieldSelector")+r.URL.Query().Get("labelSelector")+" "+r.Header.Get("Accept"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		list := map[string]string{
			"/api/v1/pods":       `"kind":"PodList","apiVersion":"v1","items":[{"metadata":{"name":"web-0","namespace":"shop"},"spec":{"nodeName":"node-a"}}]`,
			"/api/v1/namespaces": `"kind":"NamespaceList","apiVersion":"v1","items":[{"metadata":{"name":"shop","labels":{"kzero.dev/enrolled":"true"}}}]`,
			"/apis/certificates.k8s.io/v1/clustertrustbundles": `"kind":"ClusterTrustBundleList","apiVersion":"certificates.k8s.io/v1",` +
				`"items":[{"metadata":{"name":"kzero.dev:identity:cluster.local"},"spec":{"trustBundle":"PEM"}}]`,
			"/api/v1/services": `"kind":"ServiceList","apiVersion":"v1","items":[{"metadata":{"name":"web","namespace":"shop"},` +
				`"spec":{"clusterIP":"10.96.0.10","ports":[{"name":"http","port":80,"targetPort":"http"}]}}]`,
			"/apis/discovery.k8s.io/v1/endpointslices": `"kind":"EndpointSliceList","apiVersion":"discovery.k8s.io/v1","items":[{"metadata":{"name":"web-x7k2p","namespace":"shop"},` +
				`"addressType":"IPv4","endpoints":[{"addresses":["10.0.0.7"],"conditions":{"ready":true}}],"ports":[{"name":"http","port":8080}]}]`,
		}[r.URL.Path]
		_, _ = w.Write([]byte(`{` + list + `,"metadata":{"resourceVersion":"7"}}`))
	}))
	defer srv.Close()
	kube, err := agent.NewKube(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		lw   cache.ListerWatcher
		want runtime.Object
	}{
		{kube.Pods("node-a"), &kubeobj.PodList{Items: []kubeobj.Pod{{ObjectMeta: metav1.ObjectMeta{Name: "web-0", Namespace: "shop"}, Spec: kubeobj.PodSpec{NodeName: "node-a"}}}}},
		{kube.Namespaces(), &kubeobj.NamespaceList{Items: []kubeobj.Namespace{{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"kzero.dev/enrolled": "true"}}}}}},
		{kube.ClusterTrustBundle("kzero.dev:identity:cluster.local"), &kubeobj.ClusterTrustBundleList{Items: []kubeobj.ClusterTrustBundle{
			{ObjectMeta: metav1.ObjectMeta{Name: "kzero.dev:identity:cluster.local"}, Spec: kubeobj.ClusterTrustBundleSpec{TrustBundle: "PEM"}}}}},
		{kube.AllPods(), &kubeobj.PodList{Items: []kubeobj.Pod{{ObjectMeta: metav1.ObjectMeta{Name: "web-0", Namespace: "shop"}, Spec: kubeobj.PodSpec{NodeName: "node-a"}}}}},
		{kube.Services(), &kubeobj.ServiceList{Items: []kubeobj.Service{{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"}, Spec: kubeobj.ServiceSpec{
			ClusterIP: "10.96.0.10", Ports: []kubeobj.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}}}}}},
		{kube.EndpointSlices(), &kubeobj.EndpointSliceList{Items: []kubeobj.EndpointSlice{{ObjectMeta: metav1.ObjectMeta{Name: "web-x7k2p", Namespace: "shop"},
			AddressType: kubeobj.AddressTypeIPv4, Endpoints: []kubeobj.Endpoint{{Addresses: []string{"10.0.0.7"}, Conditions: kubeobj.EndpointConditions{Ready: new(true)}}},
			Ports: []kubeobj.EndpointPort{{Name: new("http"), Port: new(int32(8080))}}}}}},
	} {
		obj, err := cache.ToListerWithContext(c.lw).ListWithContext(t.Context(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if m, err := meta.ListAccessor(obj); err != nil || m.GetResourceVersion() != "7" {
			t.Errorf("List decoded %T (%v), want a list at resourceVersion 7", obj, err)
		}
		gotItems, wantItems := mustExtract(t, obj), mustExtract(t, c.want)
		if reflect.TypeOf(obj) != reflect.TypeOf(c.want) || !reflect.DeepEqual(gotItems, wantItems) {
			t.Errorf("List decoded %T with items %+v, want %T with %+v", obj, gotItems, c.want, wantItems)
		}
	}
	want := []string{ // JSON only: kubeobj's types have no protobuf form
		"/api/v1/pods?" + "spec.nodeName=node-a application/json",
		"/api/v1/namespaces?" + "kzero.dev/enrolled=true application/json",
		"/apis/certificates.k8s.io/v1/clustertrustbundles?" + "metadata.name=" + url.PathEscape("kzero.dev:identity:cluster.local") + " application/json",
		"/api/v1/pods?" + "spec.hostNetwork=false,status.phase!=Succeeded,status.phase!=Failed application/json",
		"/api/v1/services? application/json",
		"/apis/discovery.k8s.io/v1/endpointslices?" + "kubernetes.io/service-name application/json",
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != len(want) {
		t.Fatalf("requests %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("request %d: %q, want %q", i, got[i], want[i])
		}
	}
}

func mustExtract(t *testing.T, list runtime.Object) []runtime.Object {
	t.Helper()
	items, err := meta.ExtractList(list)
	if err != nil {
		t.Fatal(err)
	}
	return items
}

// NewKube's watches decode the API server's events into kubeobj's types:
// an object, the bookmark that ends a watch-list's initial events, and an
// error's Status (410 Gone: the reflector lists again).
func TestNewKubeWatchDecodes(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("watch") != "true" {
			http.Error(w, "want a watch", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"type":"ADDED","object":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"web-0","namespace":"shop","uid":"u-1"},` +
			`"spec":{"nodeName":"node-a","serviceAccountName":"web","containers":[{"name":"app","image":"web:1"}]},` +
			`"status":{"phase":"Running","containerStatuses":[{"name":"app","containerID":"containerd://c1","state":{"running":{"startedAt":"2026-12-02T10:00:00Z"}}}]}}}
{"type":"BOOKMARK","object":{"kind":"Pod","apiVersion":"v1","metadata":{"resourceVersion":"9","annotations":{"k8s.io/initial-events-end":"true"}}}}
{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","status":"Failure","code":410,"reason":"Expired","message":"too old resource version"}}
`))
	}))
	defer srv.Close()
	kube, err := agent.NewKube(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	w, err := cache.ToWatcherWithContext(kube.Pods("node-a")).WatchWithContext(t.Context(), metav1.ListOptions{ResourceVersion: "7"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	var events []watch.Event
	for e := range w.ResultChan() {
		events = append(events, e)
	}
	if len(events) != 3 {
		t.Fatalf("%d events, want 3: %+v", len(events), events)
	}
	pod, ok := events[0].Object.(*kubeobj.Pod)
	if events[0].Type != watch.Added || !ok || pod.Name != "web-0" || pod.Spec.ServiceAccountName != "web" || pod.Status.Phase != kubeobj.PodRunning ||
		len(pod.Status.ContainerStatuses) != 1 || pod.Status.ContainerStatuses[0].ContainerID != "containerd://c1" || pod.Status.ContainerStatuses[0].State.Running == nil {
		t.Errorf("ADDED decoded as %s %+v", events[0].Type, events[0].Object)
	}
	if b, ok := events[1].Object.(*kubeobj.Pod); events[1].Type != watch.Bookmark || !ok || b.ResourceVersion != "9" || b.Annotations["k8s.io/initial-events-end"] != "true" {
		t.Errorf("BOOKMARK decoded as %s %+v", events[1].Type, events[1].Object)
	}
	if s, ok := events[2].Object.(*metav1.Status); events[2].Type != watch.Error || !ok || s.Code != http.StatusGone {
		t.Errorf("ERROR decoded as %s %+v", events[2].Type, events[2].Object)
	}
}

func TestNewKubeChecksTheConfig(t *testing.T) {
	if _, err := agent.NewKube(&rest.Config{Host: "https://a b"}); err == nil {
		t.Error("NewKube took a host that is not one")
	}
}
