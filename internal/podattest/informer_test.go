package podattest

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

// The index NodePods looks pods up in, over a real cache.Indexer. The
// informer itself, with its spec.nodeName selector, is tested on the real
// cluster.
func TestPodByUID(t *testing.T) {
	indexer := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{uidIndex: indexByUID})
	web, other := running(), running(func(p *corev1.Pod) { p.Name, p.UID = "db-0", otherUID })
	for _, p := range []*corev1.Pod{web, other} {
		if err := indexer.Add(p); err != nil {
			t.Fatal(err)
		}
	}
	if got, ok := podByUID(indexer, podUID); !ok || got != web {
		t.Errorf("podByUID(%s) = %v, %v; want web-7d9f", podUID, got, ok)
	}
	if got, ok := podByUID(indexer, "0d1e2f3a-0000-4000-8000-000000000000"); ok {
		t.Errorf("podByUID of an unknown UID = %v", got.Name)
	}
	// A pod made again under the same name has a new UID.
	again := running(func(p *corev1.Pod) { p.UID = "0d1e2f3a-0000-4000-8000-000000000000" })
	if err := indexer.Update(again); err != nil {
		t.Fatal(err)
	}
	if _, ok := podByUID(indexer, podUID); ok {
		t.Errorf("podByUID finds the UID of a pod made again")
	}
	if _, err := indexByUID(&corev1.Node{}); err == nil || err.Error() != "podattest: index by UID: *v1.Node is not a pod" {
		t.Errorf("indexByUID of a node: %v", err)
	}
}

// trimPod keeps what Attest reads and nothing else.
func TestTrimPod(t *testing.T) {
	deleted := metav1.Now()
	started := &corev1.ContainerStateRunning{StartedAt: deleted}
	full := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "web-7d9f", Namespace: "shop", UID: podUID, ResourceVersion: "42", DeletionTimestamp: &deleted,
			Labels:        map[string]string{"app": "web"},
			Annotations:   map[string]string{corev1.MirrorPodAnnotationKey: "hash", "note": "x"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubelet"}},
		},
		Spec: corev1.PodSpec{NodeName: node, ServiceAccountName: "web", Containers: []corev1.Container{{Name: "app", Image: "web:1"}}},
		Status: corev1.PodStatus{
			Phase:                      corev1.PodRunning,
			PodIP:                      "10.0.0.7",
			ContainerStatuses:          []corev1.ContainerStatus{{Name: "app", ContainerID: "containerd://" + containerID, Image: "web:1", State: corev1.ContainerState{Running: started}}},
			InitContainerStatuses:      []corev1.ContainerStatus{{Name: "init", ContainerID: "containerd://" + otherID, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{}}}},
			EphemeralContainerStatuses: []corev1.ContainerStatus{{Name: "debugger"}},
		},
	}
	got, err := trimPod(full)
	if err != nil {
		t.Fatal(err)
	}
	want := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "web-7d9f", Namespace: "shop", UID: podUID, ResourceVersion: "42", DeletionTimestamp: &deleted,
			Annotations: map[string]string{corev1.MirrorPodAnnotationKey: "hash"},
		},
		Spec: corev1.PodSpec{NodeName: node, ServiceAccountName: "web"},
		Status: corev1.PodStatus{
			Phase:                      corev1.PodRunning,
			ContainerStatuses:          []corev1.ContainerStatus{{Name: "app", ContainerID: "containerd://" + containerID, State: corev1.ContainerState{Running: started}}},
			InitContainerStatuses:      []corev1.ContainerStatus{{Name: "init", ContainerID: "containerd://" + otherID}},
			EphemeralContainerStatuses: []corev1.ContainerStatus{{Name: "debugger"}},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("trimPod =\n %+v\nwant\n %+v", got, want)
	}
	tombstone := cache.DeletedFinalStateUnknown{Key: "shop/web-7d9f"}
	if got, _ := trimPod(tombstone); got != tombstone {
		t.Errorf("trimPod changed a tombstone: %v", got)
	}
}

// Until Run has listed the node's pods, NodePods knows none.
func TestNodePodsBeforeRun(t *testing.T) {
	client := &cache.ListWatch{} // never called: Run is not called
	if _, err := NewNodePods(client, ""); err == nil || err.Error() != "podattest: node pods: nodeName: required" {
		t.Errorf("NewNodePods without a node: %v", err)
	}
	if _, err := NewNodePods(nil, node); err == nil || err.Error() != "podattest: node pods: pods: required" {
		t.Errorf("NewNodePods without pods: %v", err)
	}
	pods, err := NewNodePods(client, node)
	if err != nil {
		t.Fatal(err)
	}
	if pods.HasSynced() {
		t.Error("HasSynced before Run")
	}
	if _, ok := pods.PodByUID(podUID); ok {
		t.Error("PodByUID finds a pod before Run")
	}
}
