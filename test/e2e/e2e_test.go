//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"kzero.dev/kzero/test/cluster"
)

// testImage is built from ./testserver by TestMain.
const testImage = "kzero.local/e2e-testserver:v1"

var kube *cluster.Cluster

func TestMain(m *testing.M) {
	if err := setup(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func setup() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	h, err := cluster.Default()
	if err != nil {
		return err
	}
	h.Log = os.Stderr
	if kube, err = h.Cluster(); err != nil {
		return err
	}
	if kube.Mode != cluster.ModeNode {
		return fmt.Errorf("the cluster runs in %s mode and these tests need pods: run 'make cluster-down cluster-up'", kube.Mode)
	}
	if kube.Layout.HostIP != nodeIP {
		return fmt.Errorf("these tests serve on %s, and the cluster's machine address is %s: run them on the default cluster (no CLUSTER=)", nodeIP, kube.Layout.HostIP)
	}
	if err := kube.CheckContained(ctx); err != nil {
		return err
	}
	return kube.LoadImage(ctx, "./test/e2e/testserver", testImage)
}

// namespace creates a namespace for one test and deletes it when the test
// ends.
func namespace(t testing.TB) string {
	t.Helper()
	ns, err := kube.Client.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "kzero-e2e-"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	t.Cleanup(func() {
		_ = kube.Client.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{})
	})
	return ns.Name
}

// restricted is a container security context that the restricted Pod
// Security Standard admits.
func restricted() *corev1.SecurityContext {
	no, yes := false, true
	return &corev1.SecurityContext{
		AllowPrivilegeEscalation: &no,
		RunAsNonRoot:             &yes,
		ReadOnlyRootFilesystem:   &yes,
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

// testPod is a pod of the test image running args as user 65532.
func testPod(name string, args ...string) *corev1.Pod {
	uid := int64(65532)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{
			RestartPolicy:   corev1.RestartPolicyNever,
			DNSPolicy:       corev1.DNSDefault, // the harness runs no cluster DNS
			SecurityContext: &corev1.PodSecurityContext{RunAsUser: &uid, RunAsGroup: &uid, FSGroup: &uid},
			Containers: []corev1.Container{{
				Name:            "main",
				Image:           testImage,
				ImagePullPolicy: corev1.PullNever,
				Args:            args,
				SecurityContext: restricted(),
			}},
		},
	}
}

func createPod(t testing.TB, ns string, pod *corev1.Pod) {
	t.Helper()
	if _, err := kube.Client.CoreV1().Pods(ns).Create(t.Context(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod %s: %v", pod.Name, err)
	}
}

// waitPod waits until done says the pod is where the test wants it, and
// fails the test with the pod's state and log if it does not get there.
func waitPod(t testing.TB, ns, name string, timeout time.Duration, done func(*corev1.Pod) (bool, error)) *corev1.Pod {
	t.Helper()
	var last *corev1.Pod
	err := wait.PollUntilContextTimeout(t.Context(), 500*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		p, err := kube.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = p
		return done(p)
	})
	if err != nil {
		state := "not found"
		if last != nil {
			state = fmt.Sprintf("phase %s, conditions %v, containers %v", last.Status.Phase, last.Status.Conditions, last.Status.ContainerStatuses)
		}
		t.Fatalf("pod %s/%s: %v (%s); log: %s", ns, name, err, state, podLog(t, ns, name))
	}
	return last
}

func succeeded(p *corev1.Pod) (bool, error) {
	switch p.Status.Phase {
	case corev1.PodSucceeded:
		return true, nil
	case corev1.PodFailed:
		return false, fmt.Errorf("pod failed")
	default:
		return false, nil
	}
}

func ready(p *corev1.Pod) (bool, error) {
	if p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
		return false, fmt.Errorf("pod ended")
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			return true, nil
		}
	}
	return false, nil
}

// podLog returns the pod's log, read through kube-apiserver from kubelet.
func podLog(t testing.TB, ns, name string) string {
	t.Helper()
	b, err := kube.Client.CoreV1().Pods(ns).GetLogs(name, &corev1.PodLogOptions{}).DoRaw(t.Context())
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return strings.TrimSpace(string(b))
}
