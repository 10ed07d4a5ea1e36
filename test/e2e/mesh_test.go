//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"

	"kzero.dev/kzero/internal/audit"
	"kzero.dev/kzero/internal/install"
	"kzero.dev/kzero/test/cluster"
)

// TestMesh is issue 15's acceptance on two nodes, with the agent as kzero
// install ships it: a client pod on the first node and two servers, A and
// B, on the second, all plain HTTP programs in an enrolled namespace, and
// AccessPolicies that let the client call A and refuse it B by a named
// rule. What crosses the cluster network is TLS to port 15008 only; the
// servers' agent decides and audits with the client's SPIFFE ID; a policy
// change applies within 2 s; plain text from a namespace that is not
// enrolled is refused in strict mode and let in, audited, in permissive
// mode; with the agent away a new enrolled pod waits, and it starts once
// the agent is back.
func TestMesh(t *testing.T) {
	if len(kube.Nodes) < 2 {
		t.Fatalf("the cluster has %d node(s) and this test needs 2: run 'make cluster-down cluster-up NODES=2'", len(kube.Nodes))
	}
	if err := loadAgentImages(); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := kube.CheckContained(ctx); err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(kube.Config)
	if err != nil {
		t.Fatal(err)
	}
	installCRD(t, dyn)
	client, storeNS, _, a := webhookSetup(t)
	api := startAgentAPI(t, client, storeNS, net.JoinHostPort(nodeIP, "0"), a, &syncBuffer{})
	agents := startAgentOf(t, storeNS, api.addr, true)
	first, second := kube.Nodes[0].Name, kube.Nodes[1].Name

	ns := enrolledWithSA(t, "client")
	for _, sa := range []string{"a", "b"} {
		if _, err := kube.Client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	policies := dyn.Resource(policyGVR).Namespace(ns)
	applyPolicy(t, policies, ns, "client-calls-a", "Allow", "a", "client-may-call")
	applyPolicy(t, policies, ns, "nobody-calls-b", "Deny", "b", "client-may-not-call")

	server := func(name, sa, node string) *corev1.Pod {
		p := testPod(name, "serve", ":8080")
		p.Spec.ServiceAccountName = sa
		p.Spec.NodeName = node
		c := &p.Spec.Containers[0]
		c.Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}
		// kubelet's probes come from the node: never captured.
		c.ReadinessProbe = &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http")}},
			PeriodSeconds: 1,
		}
		return p
	}
	createPod(t, ns, server("server-a", "a", second))
	createPod(t, ns, server("server-b", "b", second))
	createPod(t, ns, server("client", "client", first))
	podA := waitPod(t, ns, "server-a", 2*time.Minute, ready)
	podB := waitPod(t, ns, "server-b", 2*time.Minute, ready)
	waitPod(t, ns, "client", 2*time.Minute, ready)
	clientID := "spiffe://cluster.local/ns/" + ns + "/sa/client"
	agentOf := func(node string) *corev1.Pod {
		p := agents[node]
		if p == nil {
			t.Fatalf("no agent on %s", node)
		}
		return p
	}
	urlOf := func(p *corev1.Pod, path string) string {
		return "http://" + net.JoinHostPort(p.Status.PodIP, "8080") + path
	}

	t.Run("the client calls A over mTLS: no plain text on the wire, A's agent saw the client's SPIFFE ID", func(t *testing.T) {
		marker := "kzero-marker-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		file := filepath.Join(t.TempDir(), "mesh.pcap")
		capture, err := kube.StartCapture(t.Context(), cluster.CaptureOptions{File: file, Filter: "tcp and host " + podA.Status.PodIP})
		if err != nil {
			t.Fatal(err)
		}
		defer capture.Stop() //nolint:errcheck // stopped below; this is for a failure before
		out := get(t, ns, "client", urlOf(podA, "/hello?"+marker))
		if !strings.HasPrefix(out, "status: 200") || !strings.Contains(out, "hello from server-a") {
			t.Fatalf("the client's call to A: %q, want 200 and hello from server-a", out)
		}
		if err := capture.Stop(); err != nil {
			t.Fatal(err)
		}
		packets, err := cluster.ReadPackets(file)
		if err != nil {
			t.Fatal(err)
		}
		var tunnel int
		for _, pk := range packets {
			if bytes.Contains(pk.Payload, []byte(marker)) {
				t.Errorf("the marker crossed the cluster network in plain text: %s → %s", pk.Src, pk.Dst)
			}
			if pk.Dst.Port() == 8080 || pk.Src.Port() == 8080 {
				t.Errorf("a packet to the application's port crossed the cluster network: %s → %s", pk.Src, pk.Dst)
			}
			if pk.Dst.Port() == 15008 && len(pk.Payload) > 0 {
				tunnel++
			}
		}
		if tunnel == 0 {
			t.Errorf("the capture holds %d packets, none with data to A's port 15008", len(packets))
		}
		ev := waitAgentEvent(t, agentOf(second), "A's agent allowing the client", func(e audit.Event) bool {
			return e.Access != nil && e.Outcome == audit.OutcomeAllow && e.Access.Source.SPIFFEID.String() == clientID &&
				e.Access.Destination.ServiceAccount == "a" && e.Access.Destination.Port == 8080
		})
		if ev.Access.Policy == nil || ev.Access.Policy.Name != "client-calls-a" || ev.Access.Policy.Rule != "client-may-call" {
			t.Errorf("the allow event names %+v, want client-calls-a/client-may-call", ev.Access.Policy)
		}
	})

	// A namespace not enrolled: kzero is off for its pods.
	plain := namespace(t)
	createPod(t, plain, server("plain-server", "default", second))
	createPod(t, plain, server("plain-client", "default", first))
	plainServer := waitPod(t, plain, "plain-server", 2*time.Minute, ready)
	waitPod(t, plain, "plain-client", 2*time.Minute, ready)

	t.Run("the agents' metrics count the connections and the tunnel's opening", func(t *testing.T) {
		for node, want := range map[string][]string{
			first:  {`kzero_mesh_connections_total{decision="outbound-tunnel"}`, "kzero_mesh_tunnel_open_seconds_count"},
			second: {`kzero_mesh_connections_total{decision="inbound-tunnel"}`, `kzero_mesh_bytes_total{direction="inbound"`},
		} {
			p := agentOf(node)
			out, err := kube.NodeExec(t.Context(), node, "curl", "-sS", "--max-time", "5", "http://"+net.JoinHostPort(p.Status.PodIP, "15020")+"/metrics")
			if err != nil {
				t.Fatalf("the metrics of the agent of %s: %v", node, err)
			}
			for _, series := range want {
				if !strings.Contains(string(out), series) {
					t.Errorf("the agent of %s serves no %s", node, series)
				}
			}
		}
	})

	t.Run("with kzero off, the same marker is plain text on the wire", func(t *testing.T) {
		target := plainServer
		marker := "kzero-marker-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		file := filepath.Join(t.TempDir(), "plain.pcap")
		capture, err := kube.StartCapture(t.Context(), cluster.CaptureOptions{File: file, Filter: "tcp and host " + target.Status.PodIP})
		if err != nil {
			t.Fatal(err)
		}
		defer capture.Stop() //nolint:errcheck // stopped below
		if out := get(t, plain, "plain-client", urlOf(target, "/hello?"+marker)); !strings.HasPrefix(out, "status: 200") {
			t.Fatalf("the plain call: %q", out)
		}
		if err := capture.Stop(); err != nil {
			t.Fatal(err)
		}
		packets, err := cluster.ReadPackets(file)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(packets, func(pk cluster.Packet) bool { return bytes.Contains(pk.Payload, []byte(marker)) }) {
			t.Errorf("the capture of %d packets misses the marker sent in plain text: it could not have seen it with kzero on either", len(packets))
		}
	})

	t.Run("to a destination outside the mesh the client's connection passes through, audited", func(t *testing.T) {
		if out := get(t, ns, "client", urlOf(plainServer, "/hello")); !strings.HasPrefix(out, "status: 200") {
			t.Fatalf("the client's call to a pod that is not enrolled: %q", out)
		}
		to := net.JoinHostPort(plainServer.Status.PodIP, "8080")
		waitAgentEvent(t, agentOf(first), "the client's agent passing it through", func(e audit.Event) bool {
			return e.Access != nil && e.Access.Passthrough && e.Outcome == audit.OutcomeAllow && e.Access.Destination.Address.String() == to &&
				e.Access.Source.SPIFFEID.String() == clientID
		})
	})

	t.Run("the client's call to B is refused at once with a reset, by the rule that refuses it", func(t *testing.T) {
		out := get(t, ns, "client", urlOf(podB, "/hello"))
		ms := elapsed(t, out)
		if !strings.HasPrefix(out, "error:") || !strings.Contains(out, "reset") {
			t.Fatalf("the client's call to B: %q, want a connection reset", out)
		}
		t.Logf("B refused the client in %d ms: %s", ms, out)
		if ms > 50 {
			t.Errorf("the refusal took %d ms, want at most 50", ms)
		}
		ev := waitAgentEvent(t, agentOf(second), "B's agent refusing the client", func(e audit.Event) bool {
			return e.Access != nil && e.Outcome == audit.OutcomeDeny && e.Access.Source.SPIFFEID.String() == clientID &&
				e.Access.Destination.ServiceAccount == "b"
		})
		if ev.Access.Policy == nil || ev.Access.Policy.Name != "nobody-calls-b" || ev.Access.Policy.Rule != "client-may-not-call" {
			t.Errorf("the deny event names %+v, want nobody-calls-b/client-may-not-call", ev.Access.Policy)
		}
	})

	t.Run("a ClusterIP resolves to its endpoint through the tunnel", func(t *testing.T) {
		svc, err := kube.Client.CoreV1().Services(ns).Create(t.Context(), &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "a"},
			Spec: corev1.ServiceSpec{
				Selector: map[string]string{"app": "server-a"},
				Ports:    []corev1.ServicePort{{Name: "web", Port: 80, TargetPort: intstr.FromString("http")}},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !kube.Layout.InRanges(svc.Spec.ClusterIP) {
			t.Fatalf("Service got ClusterIP %s, outside the harness's range %s", svc.Spec.ClusterIP, kube.Layout.ServiceCIDR)
		}
		var out string
		_ = wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
			out = get(t, ns, "client", "http://"+svc.Spec.ClusterIP+"/hello") //nolint:contextcheck // bounded by the test's context
			return strings.HasPrefix(out, "status: 200"), nil
		})
		if !strings.Contains(out, "hello from server-a") {
			t.Errorf("the client's call to A's ClusterIP: %q", out)
		}
	})

	t.Run("a policy change applies to new connections within 2 s", func(t *testing.T) {
		if err := policies.Delete(t.Context(), "nobody-calls-b", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		applyPolicy(t, policies, ns, "client-calls-b", "Allow", "b", "client-may-call-b")
		var out string
		for time.Since(start) < 10*time.Second {
			if out = get(t, ns, "client", urlOf(podB, "/hello")); strings.HasPrefix(out, "status: 200") {
				break
			}
		}
		took := time.Since(start)
		t.Logf("the client reached B %v after the policy changed (each try is a kubectl exec)", took.Round(10*time.Millisecond))
		if !strings.HasPrefix(out, "status: 200") || took > 2*time.Second {
			t.Errorf("after the policy change the client's call to B gives %q after %v, want 200 within 2 s", out, took)
		}
	})

	t.Run("plain text from a namespace not enrolled: refused when strict, let in and audited when permissive", func(t *testing.T) {
		if out := get(t, plain, "plain-client", urlOf(podA, "/hello")); !strings.HasPrefix(out, "error:") {
			t.Errorf("plain text into a strict namespace: %q, want refused", out)
		}
		waitAgentEvent(t, agentOf(second), "A's agent refusing plain text", func(e audit.Event) bool {
			return e.Access != nil && e.Outcome == audit.OutcomeDeny && e.Access.Destination.Workload == "server-a" &&
				e.Access.Source.SPIFFEID.IsZero() && strings.Contains(e.Reason, "plain text")
		})
		patch := []byte(`{"metadata":{"labels":{"kzero.dev/mesh-mode":"permissive"}}}`)
		if _, err := kube.Client.CoreV1().Namespaces().Patch(t.Context(), ns, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		var out string
		_ = wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
			out = get(t, plain, "plain-client", urlOf(podA, "/hello")) //nolint:contextcheck // bounded by the test's context
			return strings.HasPrefix(out, "status: 200"), nil
		})
		if !strings.HasPrefix(out, "status: 200") {
			t.Errorf("plain text into a permissive namespace: %q, want let in", out)
		}
		waitAgentEvent(t, agentOf(second), "A's agent letting plain text in", func(e audit.Event) bool {
			return e.Access != nil && e.Outcome == audit.OutcomeAllow && e.Access.Destination.Workload == "server-a" &&
				strings.Contains(e.Reason, "permissive")
		})
		patch = []byte(`{"metadata":{"labels":{"kzero.dev/mesh-mode":null}}}`)
		if _, err := kube.Client.CoreV1().Namespaces().Patch(t.Context(), ns, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("the agent restarting: the client's calls resume", func(t *testing.T) {
		var wg sync.WaitGroup
		var loopOut []byte
		wg.Go(func() {
			loopOut, _ = kube.Kubectl(context.Background(), "exec", "-n", ns, "client", "--", "/e2e-testserver", "loop", urlOf(podA, "/hello"), "25")
		})
		time.Sleep(3 * time.Second)
		if err := kube.Client.CoreV1().Pods(storeNS).Delete(t.Context(), agentOf(first).Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		t.Logf("the client calling A every 20 ms while the agent of its node restarted: %s", strings.TrimSpace(string(loopOut)))
		var out string
		_ = wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
			out = get(t, ns, "client", urlOf(podA, "/hello")) //nolint:contextcheck // bounded by the test's context
			return strings.HasPrefix(out, "status: 200"), nil
		})
		if !strings.HasPrefix(out, "status: 200") {
			t.Errorf("after the agent's restart the client's call to A: %q", out)
		}
	})

	t.Run("with the agent's mesh away a new enrolled pod waits, and starts once it is back", func(t *testing.T) {
		// The agent's mesh alone goes (--no-mesh): its CSI driver, which
		// the pod's identity volume needs before its sandbox is made,
		// stays, so that what the pod waits for is the CNI plugin.
		setAgentArgs(t, storeNS, func(args []string) []string { return append(args, "--no-mesh") })
		createPod(t, ns, server("late", "client", first))
		var why string
		err := wait.PollUntilContextTimeout(t.Context(), time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
			evs, err := kube.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=late"})
			if err != nil {
				return false, nil
			}
			for _, e := range evs.Items {
				if strings.Contains(e.Message, "kzero-cni") {
					why = e.Message
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			t.Fatalf("no event says why pod late waits: %v", err)
		}
		t.Logf("pod late waits: %s", why)
		if !strings.Contains(why, "is enrolled") || !strings.Contains(why, "does not answer") {
			t.Errorf("the event says %q, want that the namespace is enrolled and the agent does not answer", why)
		}
		if p, err := kube.Client.CoreV1().Pods(ns).Get(t.Context(), "late", metav1.GetOptions{}); err != nil || p.Status.Phase != corev1.PodPending {
			t.Errorf("pod late: %v, want Pending", err)
		}
		start := time.Now()
		setAgentArgs(t, storeNS, func(args []string) []string {
			return slices.DeleteFunc(args, func(a string) bool { return a == "--no-mesh" })
		})
		waitPod(t, ns, "late", 3*time.Minute, ready)
		t.Logf("pod late is ready %v after the agent's mesh was let back", time.Since(start).Round(100*time.Millisecond))
		if out := get(t, ns, "late", urlOf(podA, "/hello")); !strings.HasPrefix(out, "status: 200") {
			t.Errorf("the late pod's call to A: %q", out)
		}
	})
}

// setAgentArgs changes the arguments of the agent container of the
// DaemonSet in ns, and waits until an agent with them runs on every node.
func setAgentArgs(t testing.TB, ns string, change func([]string) []string) {
	t.Helper()
	dss := kube.Client.AppsV1().DaemonSets(ns)
	ds, err := dss.Get(t.Context(), install.AgentName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	args := change(slices.Clone(ds.Spec.Template.Spec.Containers[0].Args))
	ds.Spec.Template.Spec.Containers[0].Args = args
	if _, err := dss.Update(t.Context(), ds, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(t.Context(), 500*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		l, err := kube.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=agent"})
		if err != nil || len(l.Items) != len(kube.Nodes) {
			return false, nil
		}
		for _, p := range l.Items {
			if ok, _ := ready(&p); !ok || p.DeletionTimestamp != nil || !slices.Equal(p.Spec.Containers[0].Args, args) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("the agents do not all run with %v: %v", args, err)
	}
}

// applyPolicy creates an AccessPolicy in ns: action ("Allow" or "Deny")
// for the service account sa's pods, from the service account client,
// by a rule named rule.
func applyPolicy(t testing.TB, policies dynamic.ResourceInterface, ns, name, action, sa, rule string) {
	t.Helper()
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kzero.dev/v1alpha1", "kind": "AccessPolicy",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec": map[string]any{
			"selector": map[string]any{"serviceAccounts": []any{sa}},
			"action":   action,
			"rules": []any{map[string]any{
				"name": rule,
				"from": []any{map[string]any{"serviceAccounts": []any{"client"}}},
			}},
		},
	}}
	if _, err := policies.Create(t.Context(), obj, metav1.CreateOptions{}); err != nil {
		t.Fatalf("AccessPolicy %s: %v", name, err)
	}
}

// get runs testserver get URL in the pod and returns what it printed.
func get(t testing.TB, ns, pod, url string) string {
	t.Helper()
	out, err := kube.Kubectl(t.Context(), "exec", "-n", ns, pod, "--", "/e2e-testserver", "get", url)
	if err != nil {
		t.Fatalf("testserver get %s in %s/%s: %v", url, ns, pod, err)
	}
	return strings.TrimSpace(string(out))
}

var elapsedRE = regexp.MustCompile(` in (\d+)ms`)

// elapsed is the time testserver get printed.
func elapsed(t testing.TB, out string) int {
	m := elapsedRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no time in %q", out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// agentEvents are the audit events in the log of an agent pod's agent
// container.
func agentEvents(t testing.TB, agent *corev1.Pod) []audit.Event {
	t.Helper()
	out, err := kube.Kubectl(t.Context(), "logs", "-n", agent.Namespace, agent.Name, "-c", "agent")
	if err != nil {
		t.Fatal(err)
	}
	var evs []audit.Event
	for line := range strings.SplitSeq(string(out), "\n") {
		if !strings.Contains(line, `"schema":"`+audit.Schema+`"`) {
			continue
		}
		var e audit.Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("an audit event of the agent: %v\n%s", err, line)
		}
		evs = append(evs, e)
	}
	return evs
}

// waitAgentEvent waits for an audit event of the agent that match
// accepts.
func waitAgentEvent(t testing.TB, agent *corev1.Pod, what string, match func(audit.Event) bool) audit.Event {
	t.Helper()
	var found *audit.Event
	var seen []audit.Event
	_ = wait.PollUntilContextTimeout(t.Context(), 300*time.Millisecond, 20*time.Second, true, func(context.Context) (bool, error) {
		seen = agentEvents(t, agent) //nolint:contextcheck // bounded by the test's context
		for i := range seen {
			if match(seen[i]) {
				found = &seen[i]
				return true, nil
			}
		}
		return false, nil
	})
	if found == nil {
		var b strings.Builder
		for _, e := range seen {
			j, _ := json.Marshal(e)
			fmt.Fprintf(&b, "%s\n", j)
		}
		t.Fatalf("no audit event of %s; the agent %s wrote:\n%s", what, agent.Name, b.String())
	}
	return *found
}

// BenchmarkMeshAgentMemory is the agent's resident memory, with the mesh,
// at idle with 20 enrolled pods on its node (each its own service account:
// 20 SVIDs, 20 pods' listeners), and under load: four clients on the other
// node calling four of them over keep-alive, 50 requests/s each, for 20 s;
// with the agent's CPU time per request over that load.
func BenchmarkMeshAgentMemory(b *testing.B) {
	if len(kube.Nodes) < 2 {
		b.Fatalf("the cluster has %d node(s) and this benchmark needs 2", len(kube.Nodes))
	}
	if err := loadAgentImages(); err != nil {
		b.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(kube.Config)
	if err != nil {
		b.Fatal(err)
	}
	installCRD(b, dyn)
	client, storeNS, _, a := webhookSetup(b)
	api := startAgentAPI(b, client, storeNS, net.JoinHostPort(nodeIP, "0"), a, &syncBuffer{})
	startAgentOf(b, storeNS, api.addr, true)
	ns := enrolledWithSA(b, "client")
	node, other := kube.Nodes[0].Name, kube.Nodes[1].Name
	const pods = 20
	var sas []any
	for i := range pods {
		name := fmt.Sprintf("svc-%02d", i)
		sas = append(sas, name)
		if _, err := kube.Client.CoreV1().ServiceAccounts(ns).Create(b.Context(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		p := testPod(name, "serve", ":8080")
		p.Spec.ServiceAccountName, p.Spec.NodeName = name, node
		createPod(b, ns, p)
	}
	policy := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kzero.dev/v1alpha1", "kind": "AccessPolicy",
		"metadata": map[string]any{"name": "client-calls-all", "namespace": ns},
		"spec": map[string]any{
			"selector": map[string]any{"serviceAccounts": sas},
			"rules":    []any{map[string]any{"name": "client", "from": []any{map[string]any{"serviceAccounts": []any{"client"}}}}},
		},
	}}
	if _, err := dyn.Resource(policyGVR).Namespace(ns).Create(b.Context(), policy, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	var targets []*corev1.Pod
	for i := range pods {
		targets = append(targets, waitPod(b, ns, fmt.Sprintf("svc-%02d", i), 3*time.Minute, ready))
	}
	const clients = 4
	for i := range clients {
		c := testPod(fmt.Sprintf("client-%d", i), "serve", ":8081")
		c.Spec.ServiceAccountName, c.Spec.NodeName = "client", other
		createPod(b, ns, c)
	}
	for i := range clients {
		waitPod(b, ns, fmt.Sprintf("client-%d", i), 3*time.Minute, ready)
	}
	for range b.N {
		idle := mostMemory(b, node, 7)
		b.ReportMetric(float64(idle["VmRSS"])/(1<<20), "idle-RSS-MiB")
		b.ReportMetric(float64(idle["RssAnon"])/(1<<20), "idle-anon-MiB")
		cpu0, err := agentCPU(node)
		if err != nil {
			b.Fatal(err)
		}
		var wg sync.WaitGroup
		outs := make([]string, clients)
		for i := range clients {
			wg.Go(func() {
				out, _ := kube.Kubectl(context.Background(), "exec", "-n", ns, fmt.Sprintf("client-%d", i), "--",
					"/e2e-testserver", "loop", "http://"+net.JoinHostPort(targets[i].Status.PodIP, "8080")+"/hello", "20")
				outs[i] = string(out)
			})
		}
		time.Sleep(5 * time.Second)
		loaded := mostMemory(b, node, 3)
		wg.Wait()
		cpu1, err := agentCPU(node)
		if err != nil {
			b.Fatal(err)
		}
		var ok, failed int
		for _, o := range outs {
			var n, f int
			if _, err := fmt.Sscanf(o, "ok %d failed %d", &n, &f); err != nil {
				b.Fatalf("a client printed %q", o)
			}
			ok, failed = ok+n, failed+f
		}
		b.ReportMetric(float64(loaded["VmRSS"])/(1<<20), "load-RSS-MiB")
		b.ReportMetric(float64(ok), "requests")
		b.ReportMetric(float64(failed), "failed")
		b.ReportMetric((cpu1-cpu0).Seconds()*1e6/float64(ok), "agent-CPU-µs/request")
	}
}

// mostMemory is the agent's largest memory over n samples 5 s apart.
func mostMemory(b *testing.B, node string, n int) map[string]int64 {
	var most map[string]int64
	for i := range n {
		if i > 0 {
			time.Sleep(5 * time.Second)
		}
		m, err := agentMemory(node, false)
		if err != nil {
			b.Fatal(err)
		}
		if m["VmRSS"] > most["VmRSS"] {
			most = m
		}
	}
	return most
}

// agentCPU is the CPU time (user and system) the agent of node has used.
func agentCPU(node string) (time.Duration, error) {
	pid, err := agentProcess(node, false)
	if err != nil {
		return 0, err
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100, nil // USER_HZ
}
