package podattest

import (
	"reflect"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"kzero.dev/kzero/internal/kubeobj"
)

// The index NodePods looks pods up in, over a real cache.Indexer. The
// informer itself, with its spec.nodeName selector, is tested on the real
// cluster.
func TestPodByUID(t *testing.T) {
	indexer := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{uidIndex: indexByUID})
	web, other := running(), running(func(p *kubeobj.Pod) { p.Name, p.UID = "db-0", otherUID })
	for _, p := range []*kubeobj.Pod{web, other} {
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
	again := running(func(p *kubeobj.Pod) { p.UID = "0d1e2f3a-0000-4000-8000-000000000000" })
	if err := indexer.Update(again); err != nil {
		t.Fatal(err)
	}
	if _, ok := podByUID(indexer, podUID); ok {
		t.Errorf("podByUID finds the UID of a pod made again")
	}
	if _, err := indexByUID(&kubeobj.Namespace{}); err == nil || err.Error() != "podattest: index by UID: *kubeobj.Namespace is not a pod" {
		t.Errorf("indexByUID of a namespace: %v", err)
	}
}

// trimPod keeps of a pod's metadata what Attest reads and nothing else
// (kubeobj.Pod has no other field).
func TestTrimPod(t *testing.T) {
	deleted := metav1.Now()
	started := &kubeobj.ContainerStateRunning{}
	full := &kubeobj.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "web-7d9f", Namespace: "shop", UID: podUID, ResourceVersion: "42", DeletionTimestamp: &deleted,
			Labels:        map[string]string{"app": "web"},
			Annotations:   map[string]string{kubeobj.MirrorPodAnnotationKey: "hash", "note": "x"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubelet"}},
		},
		Spec: kubeobj.PodSpec{NodeName: node, ServiceAccountName: "web"},
		Status: kubeobj.PodStatus{
			Phase:                      kubeobj.PodRunning,
			ContainerStatuses:          []kubeobj.ContainerStatus{{Name: "app", ContainerID: "containerd://" + containerID, State: kubeobj.ContainerState{Running: started}}},
			InitContainerStatuses:      []kubeobj.ContainerStatus{{Name: "init", ContainerID: "containerd://" + otherID}},
			EphemeralContainerStatuses: []kubeobj.ContainerStatus{{Name: "debugger"}},
		},
	}
	got, err := trimPod(full)
	if err != nil {
		t.Fatal(err)
	}
	want := &kubeobj.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "web-7d9f", Namespace: "shop", UID: podUID, ResourceVersion: "42", DeletionTimestamp: &deleted,
			Annotations: map[string]string{kubeobj.MirrorPodAnnotationKey: "hash"},
		},
		Spec: full.Spec, Status: full.Status,
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
