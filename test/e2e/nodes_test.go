//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"

	"kzero.dev/kzero/test/cluster"
)

// TestNodes is issue 14's acceptance on two nodes: a DaemonSet runs one pod
// per node; a pod on the first node reaches the second node's pod by pod
// IP, over the cluster network with its own address (a capture on the
// machine's bridge sees it), and through a ClusterIP Service; a hostPath
// file that the DaemonSet's pod writes on one node is not on the other, nor
// on the machine; kubectl exec and logs work on both nodes.
func TestNodes(t *testing.T) {
	if len(kube.Nodes) < 2 {
		t.Fatalf("the cluster has %d node(s) and this test needs 2: run 'make cluster-down cluster-up NODES=2'", len(kube.Nodes))
	}
	ctx := t.Context()
	if err := kube.CheckContained(ctx); err != nil {
		t.Fatal(err)
	}
	ns := namespace(t)
	first, second := kube.Nodes[0].Name, kube.Nodes[1].Name
	// Where the DaemonSet's pods write, on their node: a hostPath.
	hostDir := "/var/lib/kzero-e2e-" + ns

	root, no := int64(0), false
	dsPod := testPod("marker", "mark", "/mark", ":8080")
	c := &dsPod.Spec.Containers[0]
	c.Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}
	c.ReadinessProbe = &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http")}},
		PeriodSeconds: 1,
	}
	// Root, to write into the hostPath that kubelet makes as root.
	c.SecurityContext.RunAsNonRoot = &no
	c.SecurityContext.RunAsUser = &root
	c.VolumeMounts = []corev1.VolumeMount{{Name: "node", MountPath: "/mark"}}
	dsPod.Spec.SecurityContext = nil
	dsPod.Spec.RestartPolicy = corev1.RestartPolicyAlways
	dirOrCreate := corev1.HostPathDirectoryOrCreate
	dsPod.Spec.Volumes = []corev1.Volume{{Name: "node", VolumeSource: corev1.VolumeSource{
		HostPath: &corev1.HostPathVolumeSource{Path: hostDir, Type: &dirOrCreate}}}}
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "marker"},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: dsPod.Labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: dsPod.ObjectMeta, Spec: dsPod.Spec},
		},
	}
	if _, err := kube.Client.AppsV1().DaemonSets(ns).Create(ctx, ds, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, n := range kube.Nodes {
			_, _ = kube.NodeExec(context.Background(), n.Name, "rm", "-rf", hostDir)
		}
	})

	// One ready pod on each node.
	pods := map[string]*corev1.Pod{}
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		l, err := kube.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=marker"})
		if err != nil {
			return false, nil
		}
		clear(pods)
		for i := range l.Items {
			p := &l.Items[i]
			if pods[p.Spec.NodeName] != nil {
				return false, fmt.Errorf("two pods of the DaemonSet on node %s: %s and %s", p.Spec.NodeName, pods[p.Spec.NodeName].Name, p.Name)
			}
			if ok, _ := ready(p); ok {
				pods[p.Spec.NodeName] = p
			}
		}
		return len(pods) == len(kube.Nodes) && len(l.Items) == len(kube.Nodes), nil
	})
	if err != nil {
		t.Fatalf("the DaemonSet does not run one ready pod per node (%d nodes, ready on %d): %v", len(kube.Nodes), len(pods), err)
	}
	for _, n := range kube.Nodes {
		p := pods[n.Name]
		if !netip.MustParsePrefix(n.PodCIDR).Contains(netip.MustParseAddr(p.Status.PodIP)) {
			t.Errorf("pod %s on %s has IP %s, outside the node's pod range %s", p.Name, n.Name, p.Status.PodIP, n.PodCIDR)
		}
	}
	target := pods[second]

	t.Run("a pod on one node reaches a pod on another by pod IP, with its own address", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "by-ip.pcap")
		capture, err := kube.StartCapture(t.Context(), cluster.CaptureOptions{
			File: file, Filter: "tcp port 8080 and host " + target.Status.PodIP,
		})
		if err != nil {
			t.Fatal(err)
		}
		defer capture.Stop() //nolint:errcheck // stopped below; this is for a failure before
		client := testPod("by-ip", "fetch", "http://"+net.JoinHostPort(target.Status.PodIP, "8080")+"/hello")
		client.Spec.NodeName = first
		createPod(t, ns, client)
		p := waitPod(t, ns, "by-ip", 2*time.Minute, succeeded)
		if got, want := podLog(t, ns, "by-ip"), "hello from "+target.Name; !strings.Contains(got, want) {
			t.Errorf("the pod on %s printed %q, want %q", first, got, want)
		}
		if err := capture.Stop(); err != nil {
			t.Fatal(err)
		}
		packets, err := cluster.ReadPackets(file)
		if err != nil {
			t.Fatal(err)
		}
		// The request crossed the machine's bridge from the client
		// pod's own address (no NAT between nodes), and the answer came
		// back to it.
		from := netip.MustParseAddr(p.Status.PodIP)
		var syn, answer bool
		for _, pk := range packets {
			if pk.Src.Addr() == from && pk.Dst.Port() == 8080 && pk.Flags == "SYN" {
				syn = true
			}
			if pk.Dst.Addr() == from && bytes.Contains(pk.Payload, []byte("hello from "+target.Name)) {
				answer = true
			}
		}
		if !syn || !answer {
			t.Errorf("the capture on the cluster network holds %d packets; SYN from %s: %v, answer to it: %v", len(packets), from, syn, answer)
		}
	})

	t.Run("a pod on one node reaches a pod on another through a ClusterIP Service", func(t *testing.T) {
		// A Service of the second node's pod only.
		patch := []byte(`{"metadata":{"labels":{"kzero-e2e-target":"yes"}}}`)
		if _, err := kube.Client.CoreV1().Pods(ns).Patch(t.Context(), target.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		svc, err := kube.Client.CoreV1().Services(ns).Create(t.Context(), &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "target"},
			Spec: corev1.ServiceSpec{
				Selector: map[string]string{"kzero-e2e-target": "yes"},
				Ports:    []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromString("http")}},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !kube.Layout.InRanges(svc.Spec.ClusterIP) {
			t.Fatalf("Service got ClusterIP %s, outside the harness's range %s; not sending to it", svc.Spec.ClusterIP, kube.Layout.ServiceCIDR)
		}
		client := testPod("by-service", "fetch", "http://"+svc.Spec.ClusterIP+"/hello")
		client.Spec.NodeName = first
		createPod(t, ns, client)
		waitPod(t, ns, "by-service", 2*time.Minute, succeeded)
		if got, want := podLog(t, ns, "by-service"), "hello from "+target.Name; !strings.Contains(got, want) {
			t.Errorf("the pod on %s printed %q, want %q", first, got, want)
		}
	})

	t.Run("a hostPath written on one node is not seen on the other, nor on the machine", func(t *testing.T) {
		mine := filepath.Join(hostDir, pods[first].Name)
		for _, n := range kube.Nodes {
			path, err := kube.NodePath(n.Name, mine)
			if err != nil {
				t.Fatal(err)
			}
			_, err = os.Stat(path)
			switch {
			case n.Name == first && err != nil:
				t.Errorf("the file the pod wrote on its node %s: %v", first, err)
			case n.Name != first && err == nil:
				t.Errorf("the file the pod of %s wrote is on node %s too", first, n.Name)
			}
		}
		if _, err := os.Stat(hostDir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the nodes' hostPath %s is on the machine: %v", hostDir, err)
		}
	})

	t.Run("kubectl exec and logs work on every node", func(t *testing.T) {
		for _, n := range kube.Nodes {
			p := pods[n.Name]
			out, err := kube.Kubectl(t.Context(), "exec", "-n", ns, p.Name, "--", "/e2e-testserver", "cat", "/mark/"+p.Name)
			if err != nil || strings.TrimSpace(string(out)) != p.Name {
				t.Errorf("kubectl exec into %s on %s: %q, %v; want %q", p.Name, n.Name, out, err, p.Name)
			}
			// What another node's pod wrote is not in this node's hostPath.
			for _, o := range pods {
				if o.Spec.NodeName == n.Name {
					continue
				}
				out, err := kube.Kubectl(t.Context(), "exec", "-n", ns, p.Name, "--", "/e2e-testserver", "cat", "/mark/"+o.Name)
				if err == nil || !strings.Contains(string(out), "no such file or directory") {
					t.Errorf("kubectl exec into %s on %s read what %s wrote on %s: %q, %v", p.Name, n.Name, o.Name, o.Spec.NodeName, out, err)
				}
			}
			out, err = kube.Kubectl(t.Context(), "logs", "-n", ns, p.Name)
			if want := "marked /mark/" + p.Name; err != nil || !strings.Contains(string(out), want) {
				t.Errorf("kubectl logs of %s on %s: %q, %v; want %q", p.Name, n.Name, out, err, want)
			}
		}
	})
}
