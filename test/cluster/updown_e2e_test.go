//go:build e2e

package cluster

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// secondCluster is the named cluster the leak test starts beside the
// default one.
const secondCluster = "second"

// TestUpDownTwice runs `make cluster-up` (twice: the second must do nothing)
// and `make cluster-down` (also twice) in two rounds: one node, then two
// nodes with a second, named cluster of one node beside them, with a pod
// running in each cluster. It checks that stopping the second cluster
// leaves the first's network as it was, and that the host holds no process,
// mount, network device, route, rule, iptables rule or chain, namespace or
// cgroup of either cluster afterwards.
func TestUpDownTwice(t *testing.T) {
	h, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	second, err := Named(secondCluster)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range []*Harness{h, second} {
		x.Log = t.Output()
		if mode, ok := x.Running(); ok {
			t.Fatalf("a %s cluster is running in %s; this test needs the host without one: run 'make cluster-down CLUSTER=%s'", mode, x.RunDir, x.Name)
		}
	}
	ctx := t.Context()
	before, err := h.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = second.Down(context.Background())
		_ = h.Down(context.Background())
	})

	for i, nodes := range []int{1, 2} {
		round := i + 1
		up(t, h, nodes)
		var onlyFirst HostState
		if nodes > 1 {
			if onlyFirst, err = h.Snapshot(ctx); err != nil {
				t.Fatal(err)
			}
			up(t, second, 1)
		}

		during, err := h.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// The snapshot must see the cluster, or its emptiness later
		// proves nothing. The nodes' mounts and iptables rules are in
		// their own namespaces, which go with them.
		seen := strings.Join(Leaks(before, during), "\n")
		want := []string{"link: " + LayoutOf(0).Bridge, "process: ", "namespace: net:", "namespace: mnt:", "namespace: pid:", "rule: ", "route: ", "cgroup: "}
		if nodes > 1 {
			want = append(want, "link: "+LayoutOf(1).Bridge)
		}
		for _, w := range want {
			if !strings.Contains(seen, w) {
				t.Errorf("round %d: running clusters show no %q on the host; the leak check is blind to it", round, w)
			}
		}

		if nodes > 1 {
			down(t, second)
			after, err := h.Snapshot(ctx)
			if err != nil {
				t.Fatal(err)
			}
			// Only the network: the first cluster's pods and kubelet
			// may change their processes and mounts meanwhile.
			for _, kind := range []string{"link", "route", "rule", "cgroup"} {
				if l := Leaks(HostState{kind: onlyFirst[kind]}, HostState{kind: after[kind]}); len(l) > 0 {
					t.Errorf("round %d: make cluster-down CLUSTER=%s left behind:\n  %s", round, secondCluster, strings.Join(l, "\n  "))
				}
				if l := Leaks(HostState{kind: after[kind]}, HostState{kind: onlyFirst[kind]}); len(l) > 0 {
					t.Errorf("round %d: make cluster-down CLUSTER=%s removed what the default cluster made:\n  %s", round, secondCluster, strings.Join(l, "\n  "))
				}
			}
			c, err := h.Cluster()
			if err != nil {
				t.Fatal(err)
			}
			if err := c.CheckContained(ctx); err != nil {
				t.Errorf("round %d: the default cluster after the second went down: %v", round, err)
			}
		}
		down(t, h)
		after, err := h.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if leaks := Leaks(before, after); len(leaks) > 0 {
			t.Errorf("round %d: make cluster-down left behind:\n  %s", round, strings.Join(leaks, "\n  "))
		}
	}

	for _, x := range []*Harness{h, second} {
		if err := x.Down(ctx); err != nil {
			t.Errorf("stopping a cluster that is not running: %v", err)
		}
	}
}

// up starts h's cluster with nodes nodes, starts it again (which must
// change nothing), checks that it is contained and runs a pod on each node.
func up(t *testing.T, h *Harness, nodes int) {
	t.Helper()
	ctx := t.Context()
	start := time.Now()
	if err := h.Up(ctx, ModeNode, nodes); err != nil {
		t.Fatal(err)
	}
	t.Logf("cluster %q with %d node(s) up in %s", h.Name, nodes, time.Since(start).Round(time.Second))
	running, err := h.processes()
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Up(ctx, ModeNode, nodes); err != nil {
		t.Fatalf("starting a running cluster again: %v", err)
	}
	again, err := h.processes()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(running, again) {
		t.Errorf("starting a running cluster again changed its processes; it should do nothing:\nbefore %v\nafter  %v", running, again)
	}
	c, err := h.Cluster()
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Nodes) != nodes {
		t.Fatalf("cluster %q has nodes %v, want %d", h.Name, c.Nodes, nodes)
	}
	if err := c.CheckContained(ctx); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Nodes {
		runPod(t, c, n.Name)
	}
}

func down(t *testing.T, h *Harness) {
	t.Helper()
	start := time.Now()
	if err := h.Down(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Logf("cluster %q down in %s", h.Name, time.Since(start).Round(time.Second))
}

// runPod runs a pod on node with a service account token volume (a tmpfs
// mount), in the pod network (a veth and a network namespace), and waits
// until it runs.
func runPod(t *testing.T, c *Cluster, node string) {
	t.Helper()
	uid := int64(65535)
	name := "leak-check-" + node
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: corev1.PodSpec{
			NodeName:        node,
			DNSPolicy:       corev1.DNSDefault,
			SecurityContext: &corev1.PodSecurityContext{RunAsUser: &uid, RunAsGroup: &uid},
			Containers: []corev1.Container{{
				Name: "pause", Image: PauseImage, ImagePullPolicy: corev1.PullNever,
			}},
		},
	}
	if _, err := c.Client.CoreV1().Pods("default").Create(t.Context(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod: %v", err)
	}
	var phase corev1.PodPhase
	err := wait.PollUntilContextTimeout(t.Context(), 500*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := c.Client.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		phase = p.Status.Phase
		return phase == corev1.PodRunning && slices.ContainsFunc(p.Status.ContainerStatuses, func(s corev1.ContainerStatus) bool { return s.Ready }), nil
	})
	if err != nil {
		t.Fatalf("pod %s is %s, not running: %v", name, phase, err)
	}
}
