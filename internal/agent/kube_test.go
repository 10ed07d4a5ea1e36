package agent_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"kzero.dev/kzero/internal/agent"
	"kzero.dev/kzero/internal/kubeobj"
)

// clientsetKube is agent.Kube over a clientset, for the tests that give
// the agent client-go's fake clientset (which does not serve watch-list
// requests, as the wrapping tells the reflectors). It hands out kubeobj's
// types, decoded from the JSON of the clientset's, as the API server's
// JSON is decoded by NewKube's clients.
type clientsetKube struct{ c kubernetes.Interface }

func (k clientsetKube) Pods(node string) cache.ListerWatcher {
	pods := k.c.CoreV1().Pods("")
	return k.listWatch(fields.OneTermEqualSelector("spec.nodeName", node).String(),
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) { return pods.List(ctx, o) }, pods.Watch)
}

func (k clientsetKube) Namespaces() cache.ListerWatcher {
	namespaces := k.c.CoreV1().Namespaces()
	return k.listWatch("",
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return namespaces.List(ctx, o)
		}, namespaces.Watch)
}

func (k clientsetKube) ClusterTrustBundle(name string) cache.ListerWatcher {
	ctbs := k.c.CertificatesV1().ClusterTrustBundles()
	return k.listWatch(fields.OneTermEqualSelector("metadata.name", name).String(),
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) { return ctbs.List(ctx, o) }, ctbs.Watch)
}

// listWatch lists and watches with list and watchFn, under the field
// selector sel ("" for none).
func (k clientsetKube) listWatch(sel string, list cache.ListWithContextFunc, watchFn cache.WatchFuncWithContext) cache.ListerWatcher {
	return cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = sel
			l, err := list(ctx, o)
			if err != nil {
				return nil, err
			}
			return toKubeobj(l)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = sel
			w, err := watchFn(ctx, o)
			if err != nil {
				return nil, err
			}
			return watch.Filter(w, func(e watch.Event) (watch.Event, bool) {
				obj, err := toKubeobj(e.Object)
				if err != nil {
					panic(err) // the clientset's own objects always encode
				}
				e.Object = obj
				return e, true
			}), nil
		},
	}, k.c)
}

// toKubeobj returns k8s.io/api's obj as kubeobj's type of the same kind,
// through its JSON; any other object (a Status) as it is.
func toKubeobj(obj runtime.Object) (runtime.Object, error) {
	var out runtime.Object
	switch obj.(type) {
	case *corev1.Pod:
		out = &kubeobj.Pod{}
	case *corev1.PodList:
		out = &kubeobj.PodList{}
	case *corev1.Namespace:
		out = &kubeobj.Namespace{}
	case *corev1.NamespaceList:
		out = &kubeobj.NamespaceList{}
	case *certificatesv1.ClusterTrustBundle:
		out = &kubeobj.ClusterTrustBundle{}
	case *certificatesv1.ClusterTrustBundleList:
		out = &kubeobj.ClusterTrustBundleList{}
	default:
		return obj, nil
	}
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	return out, json.Unmarshal(b, out)
}

// NewKube's lists ask the API server for the node's pods, every namespace
// and the one ClusterTrustBundle, in JSON, and decode what it answers. The
// API server here is a stand-in that records the requests: the real one
// serves the agent in the end-to-end test.
func TestNewKubeAsksForWhatTheAgentReads(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.URL.Path+"?"+r.URL.Query().Get("fieldSelector")+" "+r.Header.Get("Accept"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		typ := map[string]string{
			"/api/v1/pods": `"kind":"PodList","apiVersion":"v1"`, "/api/v1/namespaces": `"kind":"NamespaceList","apiVersion":"v1"`,
			"/apis/certificates.k8s.io/v1/clustertrustbundles": `"kind":"ClusterTrustBundleList","apiVersion":"certificates.k8s.io/v1"`,
		}[r.URL.Path]
		_, _ = w.Write([]byte(`{` + typ + `,"metadata":{"resourceVersion":"7"},"items":[]}`))
	}))
	defer srv.Close()
	kube, err := agent.NewKube(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	for _, lw := range []cache.ListerWatcher{kube.Pods("node-a"), kube.Namespaces(), kube.ClusterTrustBundle("kzero.dev:identity:cluster.local")} {
		obj, err := cache.ToListerWithContext(lw).ListWithContext(t.Context(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if m, err := meta.ListAccessor(obj); err != nil || m.GetResourceVersion() != "7" {
			t.Errorf("List decoded %T (%v), want a list at resourceVersion 7", obj, err)
		}
	}
	want := []string{ // JSON only: kubeobj's types have no protobuf form
		"/api/v1/pods?" + "spec.nodeName=node-a application/json",
		"/api/v1/namespaces? application/json",
		"/apis/certificates.k8s.io/v1/clustertrustbundles?" + "metadata.name=" + url.PathEscape("kzero.dev:identity:cluster.local") + " application/json",
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

func TestNewKubeChecksTheConfig(t *testing.T) {
	if _, err := agent.NewKube(&rest.Config{Host: "https://a b"}); err == nil {
		t.Error("NewKube took a host that is not one")
	}
}
