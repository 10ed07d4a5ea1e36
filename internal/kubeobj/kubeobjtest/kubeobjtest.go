// Package kubeobjtest is a test double of the API server for the node
// agent's informers: ListerWatchers over client-go's fake clientset that
// hand out kubeobj's types, decoded from the JSON of the clientset's, as
// the API server's JSON is decoded by the agent's REST clients. Only
// tests import it: it links k8s.io/api, which the agent must not.
package kubeobjtest

import (
	"context"
	"encoding/json"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"kzero.dev/kzero/internal/kubeobj"
)

// ListWatch returns the ListerWatcher of one resource of the clientset c:
// list and watchFn are c's List and Watch of it (c.CoreV1().Pods(""), say),
// and opts, if not nil, sets the selectors of each request. The fake
// clientset's lists honour label selectors only, and its watches no
// selector at all: what they ignore, the code under test must not rely
// on. The ListerWatcher tells the reflectors that the fake serves no
// watch-list requests.
func ListWatch[L runtime.Object](c kubernetes.Interface, list func(context.Context, metav1.ListOptions) (L, error),
	watchFn func(context.Context, metav1.ListOptions) (watch.Interface, error), opts func(*metav1.ListOptions)) cache.ListerWatcher {
	if opts == nil {
		opts = func(*metav1.ListOptions) {}
	}
	return cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			opts(&o)
			l, err := list(ctx, o)
			if err != nil {
				return nil, err
			}
			return Convert(l)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			opts(&o)
			w, err := watchFn(ctx, o)
			if err != nil {
				return nil, err
			}
			return watch.Filter(w, func(e watch.Event) (watch.Event, bool) {
				obj, err := Convert(e.Object)
				if err != nil {
					panic(err) // the clientset's own objects always encode
				}
				e.Object = obj
				return e, true
			}), nil
		},
	}, c)
}

// Convert returns k8s.io/api's obj as kubeobj's type of the same kind,
// through its JSON; any other object (a Status) as it is. encoding/json
// matches names regardless of case: kubeobj's tests check them exactly.
func Convert(obj runtime.Object) (runtime.Object, error) {
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
	case *corev1.Service:
		out = &kubeobj.Service{}
	case *corev1.ServiceList:
		out = &kubeobj.ServiceList{}
	case *certificatesv1.ClusterTrustBundle:
		out = &kubeobj.ClusterTrustBundle{}
	case *certificatesv1.ClusterTrustBundleList:
		out = &kubeobj.ClusterTrustBundleList{}
	case *discoveryv1.EndpointSlice:
		out = &kubeobj.EndpointSlice{}
	case *discoveryv1.EndpointSliceList:
		out = &kubeobj.EndpointSliceList{}
	default:
		return obj, nil
	}
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	return out, json.Unmarshal(b, out)
}
