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

// TestUpDownTwice runs `make cluster-up` (twice: the second must do nothing)
// and `make cluster-down` (also twice) in two rounds, with a pod running in
// each, and checks that the host holds no process, mount, network device,
// route, rule, iptables rule or chain, network namespace or cgroup of the
// cluster afterwards.
func TestUpDownTwice(t *testing.T) {
	h, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	h.Log = t.Output()
	if mode, ok := h.Running(); ok {
		t.Fatalf("a %s cluster is running; this test needs the host without one: run 'make cluster-down'", mode)
	}
	ctx := t.Context()
	before, err := h.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Down(context.Background()) })

	for round := 1; round <= 2; round++ {
		start := time.Now()
		if err := h.Up(ctx, ModeNode); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		t.Logf("round %d: cluster up in %s", round, time.Since(start).Round(time.Second))
		running, err := h.processes()
		if err != nil {
			t.Fatal(err)
		}
		if err := h.Up(ctx, ModeNode); err != nil {
			t.Fatalf("round %d: starting a running cluster again: %v", round, err)
		}
		again, err := h.processes()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(running, again) {
			t.Errorf("round %d: starting a running cluster again changed its processes; it should do nothing:\nbefore %v\nafter  %v", round, running, again)
		}
		if err := CheckContained(ctx); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		runPod(t, h)

		during, err := h.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// The snapshot must see the cluster, or its emptiness later
		// proves nothing.
		seen := strings.Join(Leaks(before, during), "\n")
		for _, want := range []string{"link: " + Bridge, "process: ", "mount: ", "iptables: ", "netns: ", "rule: "} {
			if !strings.Contains(seen, want) {
				t.Errorf("round %d: a running cluster shows no %q on the host; the leak check is blind to it", round, want)
			}
		}

		start = time.Now()
		if err := h.Down(ctx); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		t.Logf("round %d: cluster down in %s", round, time.Since(start).Round(time.Second))
		after, err := h.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if leaks := Leaks(before, after); len(leaks) > 0 {
			t.Errorf("round %d: make cluster-down left behind:\n  %s", round, strings.Join(leaks, "\n  "))
		}
	}

	if err := h.Down(ctx); err != nil {
		t.Errorf("stopping a cluster that is not running: %v", err)
	}
}

// runPod runs a pod with a service account token volume (a tmpfs mount), in
// the pod network (a veth and a network namespace), and waits until it runs.
func runPod(t *testing.T, h *Harness) {
	t.Helper()
	c, err := h.Cluster()
	if err != nil {
		t.Fatal(err)
	}
	uid := int64(65535)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "leak-check", Namespace: "default"},
		Spec: corev1.PodSpec{
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
	err = wait.PollUntilContextTimeout(t.Context(), 500*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := c.Client.CoreV1().Pods("default").Get(ctx, "leak-check", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		phase = p.Status.Phase
		return phase == corev1.PodRunning && slices.ContainsFunc(p.Status.ContainerStatuses, func(s corev1.ContainerStatus) bool { return s.Ready }), nil
	})
	if err != nil {
		t.Fatalf("pod leak-check is %s, not running: %v", phase, err)
	}
}
