//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"kzero.dev/kzero/api/v1alpha1"
	"kzero.dev/kzero/internal/admission"
	"kzero.dev/kzero/internal/agentapi"
	"kzero.dev/kzero/internal/audit"
	"kzero.dev/kzero/internal/authority"
	"kzero.dev/kzero/internal/ca/catest"
	"kzero.dev/kzero/internal/cni"
	"kzero.dev/kzero/internal/install"
	"kzero.dev/kzero/test/cluster"
)

// kzeroImage and workloadImage are built by the tests that need them.
const (
	kzeroImage    = "kzero.local/kzero:e2e"
	workloadImage = "kzero.local/e2e-workload:v1"
)

var loadAgentImages = sync.OnceValue(func() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := kube.LoadImage(ctx, "./cmd/kzero", kzeroImage, "./cmd/kzero-agent", "./cmd/kzero-cni"); err != nil {
		return err
	}
	return kube.LoadImage(ctx, "./test/e2e/workload", workloadImage)
})

// The lifetimes the agent tests issue: short, so that a rotation and an
// agent SVID's expiry happen within the test.
const (
	testAgentSVIDTTL    = time.Minute
	testWorkloadSVIDTTL = time.Minute
)

// agentAPI is the authority's agent API run in this process.
type agentAPI struct {
	addr string
	out  *syncBuffer
	stop func()
}

// startAgentAPI serves the agent API at addr (host:0 for a free port)
// beside the replica r, as the authority's service account.
func startAgentAPI(t testing.TB, client kubernetes.Interface, storeNS, addr string, r *replica, out *syncBuffer) *agentAPI {
	t.Helper()
	var ln net.Listener
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		var err error
		ln, err = net.Listen("tcp", addr) // the port of a stopped API may linger a moment
		return err == nil, nil
	})
	if err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	rec, err := audit.NewRecorder(audit.Config{Component: audit.ComponentAuthority, Out: out})
	if err != nil {
		t.Fatal(err)
	}
	api, err := authority.NewAgentAPI(authority.AgentAPIConfig{
		Listener: ln, TrustDomain: trustDomain, Namespace: storeNS,
		CA: func() authority.AgentCA {
			if c := r.r.CA(); c != nil {
				return c
			}
			return nil
		},
		Tokens:       client.AuthenticationV1().TokenReviews(),
		Cluster:      authority.LiveCluster{Client: client},
		AgentSVIDTTL: testAgentSVIDTTL, WorkloadSVIDTTL: testWorkloadSVIDTTL,
		Audit: rec, Log: slog.New(slog.NewTextHandler(tlog{t}, nil)).With("component", "agent-api"),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- api.Run(ctx) }()
	a := &agentAPI{addr: ln.Addr().String(), out: out}
	var once sync.Once
	a.stop = func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
	t.Cleanup(a.stop)
	return a
}

// startAgent runs the node agent as kzero install ships it, in storeNS,
// calling the agent API at apiAddr, with its CSIDriver, but without the
// mesh (--no-mesh: these tests are of the Workload API, and their pods
// talk in plain text), and waits until it runs on every node, its socket
// is there and each node's kubelet has registered its CSI driver. It
// returns the agents' pods by node.
func startAgent(t testing.TB, storeNS, apiAddr string) map[string]*corev1.Pod {
	t.Helper()
	return startAgentOf(t, storeNS, apiAddr, false)
}

// startAgentOf is startAgent, with the mesh if mesh is true: the agent
// then chains its CNI plugin on every node, which is taken out again when
// the test ends, so that the next tests' pods do not wait for an agent.
func startAgentOf(t testing.TB, storeNS, apiAddr string, mesh bool) map[string]*corev1.Pod {
	t.Helper()
	ctx := t.Context()
	ds, sa, role, binding, err := install.Agent(install.Options{Image: kzeroImage, Namespace: storeNS, PullPolicy: corev1.PullNever,
		KubeletDir: cluster.KubeletDir})
	if err != nil {
		t.Fatal(err)
	}
	// One CSIDriver for the cluster, as kzero install makes it: the
	// agents of every test serve the same driver, in turn.
	if _, err := kube.Client.StorageV1().CSIDrivers().Create(ctx, install.CSIDriver(), metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	c := ds.Spec.Template.Spec.Containers[0]
	c.Args = append(c.Args, "--authority-url", "https://"+apiAddr)
	if !mesh {
		c.Args = append(c.Args, "--no-mesh")
	}
	ds.Spec.Template.Spec.Containers[0] = c
	if _, err := kube.Client.CoreV1().ServiceAccounts(storeNS).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rbac := kube.Client.RbacV1()
	role.Name += "-" + storeNS
	binding.Name += "-" + storeNS
	binding.RoleRef.Name = role.Name
	if _, err := rbac.ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rbac.ClusterRoles().Delete(context.Background(), role.Name, metav1.DeleteOptions{}) })
	if _, err := rbac.ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = rbac.ClusterRoleBindings().Delete(context.Background(), binding.Name, metav1.DeleteOptions{})
	})
	if _, err := kube.Client.AppsV1().DaemonSets(storeNS).Create(ctx, ds, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if mesh {
		t.Cleanup(func() { unchainCNI(t) })
	}
	agents := map[string]*corev1.Pod{}
	var missing string
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		l, err := kube.Client.CoreV1().Pods(storeNS).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=agent"})
		if err != nil {
			return false, nil
		}
		for i := range l.Items {
			if p := &l.Items[i]; p.Status.Phase == corev1.PodRunning {
				agents[p.Spec.NodeName] = p
			}
		}
		for _, n := range kube.Nodes {
			if agents[n.Name] == nil {
				missing = "no agent runs on " + n.Name
				return false, nil
			}
			sock, err := kube.NodePath(n.Name, v1alpha1.WorkloadAPISocket)
			if err != nil {
				return false, err
			}
			if _, err = os.Stat(sock); err != nil {
				missing = "no socket on " + n.Name
				return false, nil
			}
			// kubelet has registered the driver once the node's
			// CSINode lists it, with the node ID the driver gave.
			c, err := kube.Client.StorageV1().CSINodes().Get(ctx, n.Name, metav1.GetOptions{})
			if err != nil || !slices.ContainsFunc(c.Spec.Drivers, func(d storagev1.CSINodeDriver) bool {
				return d.Name == v1alpha1.CSIDriverName && d.NodeID == n.Name
			}) {
				missing = "the CSI driver is not registered on " + n.Name
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("the agent did not start on every node, make its socket %s and register its CSI driver with kubelet (%s): %v", v1alpha1.WorkloadAPISocket, missing, err)
	}
	return agents
}

// TestWorkloadAPI is issue 6's acceptance on the real cluster: the agent,
// a DaemonSet as kzero install ships it, attests to the authority and
// serves the Workload API to the pods of enrolled namespaces, which reach
// its socket with nothing in their manifests, through its CSI driver's
// read-only inline volume, in a namespace that enforces Pod Security
// restricted.
func TestWorkloadAPI(t *testing.T) {
	if err := loadAgentImages(); err != nil {
		t.Fatal(err)
	}
	if err := kube.CheckContained(t.Context()); err != nil {
		t.Fatal(err)
	}
	client, storeNS, _, a := webhookSetup(t)
	apiOut := &syncBuffer{}
	api := startAgentAPI(t, client, storeNS, net.JoinHostPort(nodeIP, "0"), a, apiOut)
	agents := startAgent(t, storeNS, api.addr)
	enrolled := enrolledWithSA(t, "web")
	restrict(t, enrolled)
	wantID := fmt.Sprintf("spiffe://cluster.local/ns/%s/sa/web", enrolled)

	pod := testPod("workload")
	pod.Spec.ServiceAccountName = "web"
	pod.Spec.Containers[0].Image = workloadImage
	createPod(t, enrolled, pod)
	p := waitPod(t, enrolled, "workload", 2*time.Minute, ready)
	agentPod := agents[p.Spec.NodeName]
	if agentPod == nil {
		t.Fatalf("the workload runs on %s, where no agent runs", p.Spec.NodeName)
	}

	t.Run("the socket comes through the agent's CSI driver, read-only, in a restricted namespace", func(t *testing.T) {
		i := slices.IndexFunc(p.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == admission.WorkloadAPIVolumeName })
		if i < 0 || p.Spec.Volumes[i].CSI == nil || p.Spec.Volumes[i].CSI.Driver != v1alpha1.CSIDriverName ||
			p.Spec.Volumes[i].CSI.ReadOnly == nil || !*p.Spec.Volumes[i].CSI.ReadOnly || p.Spec.Volumes[i].HostPath != nil {
			t.Fatalf("the pod's volumes: %+v, want %s as a read-only CSI volume of %s", p.Spec.Volumes, admission.WorkloadAPIVolumeName, v1alpha1.CSIDriverName)
		}
		// The namespace does enforce restricted: a hostPath is refused.
		hp := testPod("hostpath")
		hp.Spec.Volumes = []corev1.Volume{{Name: "node", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: v1alpha1.WorkloadAPIDir}}}}
		_, err := kube.Client.CoreV1().Pods(enrolled).Create(t.Context(), hp, metav1.CreateOptions{})
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "violates PodSecurity \"restricted:latest\"") {
			t.Errorf("a hostPath pod in the restricted namespace: %v, want Forbidden by PodSecurity", err)
		}
	})

	t.Run("a pod cannot write into the socket's directory", func(t *testing.T) {
		w := testPod("tamper", "tamper")
		w.Spec.ServiceAccountName = "web"
		w.Spec.Containers[0].Image = workloadImage
		createPod(t, enrolled, w)
		node := waitPod(t, enrolled, "tamper", 2*time.Minute, succeeded).Spec.NodeName
		log := podLog(t, enrolled, "tamper")
		for _, want := range []string{
			"create: open " + v1alpha1.WorkloadAPIDir + "/planted: read-only file system",
			"remove: remove " + v1alpha1.WorkloadAPISocket + ": read-only file system",
		} {
			if !strings.Contains(log, want) {
				t.Errorf("the tampering pod printed\n%s\nwant %q", log, want)
			}
		}
		planted, err := kube.NodePath(node, v1alpha1.WorkloadAPIDir+"/planted")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(planted); err == nil {
			t.Errorf("the socket directory of node %s holds the pod's file", node)
		}
		sock, err := kube.NodePath(node, v1alpha1.WorkloadAPISocket)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(sock); err != nil {
			t.Errorf("the agent's socket: %v", err)
		}
	})

	t.Run("a CSI volume not marked read-only is refused, and its pod does not start", func(t *testing.T) {
		rw := testPod("writable")
		rw.Spec.ServiceAccountName = "web"
		rw.Spec.Containers[0].Image = workloadImage
		// Its own volume of the webhook's name: the webhook adds none.
		rw.Spec.Volumes = []corev1.Volume{{Name: admission.WorkloadAPIVolumeName, VolumeSource: corev1.VolumeSource{
			CSI: &corev1.CSIVolumeSource{Driver: v1alpha1.CSIDriverName}}}}
		rw.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: admission.WorkloadAPIVolumeName, MountPath: "/writable"}}
		createPod(t, enrolled, rw)
		const want = "rpc error: code = InvalidArgument desc = the volume of the CSI driver csi.kzero.dev must be read-only: set readOnly: true in the pod's csi volume"
		var seen string
		err := wait.PollUntilContextTimeout(t.Context(), time.Second, time.Minute, true, func(ctx context.Context) (bool, error) {
			evs, err := kube.Client.CoreV1().Events(enrolled).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=writable"})
			if err != nil {
				return false, nil
			}
			for _, e := range evs.Items {
				if e.Reason == "FailedMount" {
					seen = e.Message
					if strings.Contains(e.Message, want) {
						return true, nil
					}
				}
			}
			return false, nil
		})
		if err != nil {
			t.Fatalf("no FailedMount event saying %q (last: %q): %v", want, seen, err)
		}
		t.Logf("the pod's event: %s", seen)
		got, err := kube.Client.CoreV1().Pods(enrolled).Get(t.Context(), "writable", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.Status.Phase != corev1.PodPending || slices.ContainsFunc(got.Status.ContainerStatuses, func(s corev1.ContainerStatus) bool { return s.State.Running != nil }) {
			t.Errorf("the pod with a writable CSI volume is %s: %+v, want Pending, its container not started", got.Status.Phase, got.Status.ContainerStatuses)
		}
	})

	t.Run("a pod gets its X.509-SVID, bundle and JWT-SVID through the socket", func(t *testing.T) {
		for _, want := range []string{"x509: " + wantID + " serial ", "jwt-api: " + wantID + "\n", "jwt-bundle: " + wantID + "\n", "stream 1: " + wantID + " serial "} {
			waitLog(t, enrolled, "workload", want, time.Minute)
		}
		e := waitEvent(t, api.out, "the agent's attestation", func(e audit.Event) bool {
			return e.Kind == audit.KindIssuance && e.Outcome == audit.OutcomeSuccess && e.Issuance.Requester == "node/"+agentPod.Spec.NodeName
		})
		if got := e.Issuance.SPIFFEID.String(); got != "spiffe://cluster.local"+agentapi.AgentPathPrefix+agentPod.Spec.NodeName {
			t.Errorf("the agent's SVID is for %s", got)
		}
	})

	t.Run("the rotated SVID arrives on the same stream", func(t *testing.T) {
		// The workload's SVID lives a minute and is renewed at half life;
		// the program prints every message of its one stream, and exits on
		// a stream error.
		waitSerials(t, enrolled, "workload", wantID, 2, 2*time.Minute)
		if log := podLog(t, enrolled, "workload"); strings.Contains(log, "error:") {
			t.Errorf("the workload failed: %s", log)
		}
	})

	t.Run("a process of the node outside any pod is refused", func(t *testing.T) {
		// The workload program, run in the node's namespaces as one of
		// its own processes, as the node's root.
		out, _ := kube.NodeExec(t.Context(), p.Spec.NodeName, "env", admission.EndpointSocketEnv+"="+admission.EndpointSocket,
			kube.ImageBinary(workloadImage))
		if want := "code = PermissionDenied"; !strings.Contains(string(out), want) {
			t.Errorf("the workload program run on node %s outside any pod printed %q, want %q", p.Spec.NodeName, out, want)
		}
	})

	t.Run("a request without the security header is refused", func(t *testing.T) {
		sock, err := kube.NodePath(p.Spec.NodeName, v1alpha1.WorkloadAPISocket)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := grpc.NewClient("unix:"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		stream, err := workload.NewSpiffeWorkloadAPIClient(conn).FetchX509SVID(t.Context(), &workload.X509SVIDRequest{})
		if err == nil {
			_, err = stream.Recv()
		}
		if status.Code(err) != codes.InvalidArgument || status.Convert(err).Message() != "security header missing from request" {
			t.Errorf("FetchX509SVID without the header: %v, want InvalidArgument: security header missing from request", err)
		}
	})

	t.Run("each agent serves its own node's pods, and cannot get the SVID of another node's pod", func(t *testing.T) {
		other := otherNodePod(t, enrolled, p.Spec.NodeName)
		otherID := fmt.Sprintf("spiffe://cluster.local/ns/%s/sa/%s", enrolled, other.Spec.ServiceAccountName)
		// The pod of the other node gets its SVID from that node's own
		// agent, which attested as that node.
		waitLog(t, enrolled, other.Name, "x509: "+otherID+" serial ", 2*time.Minute)
		if len(attestations(t, apiOut, other.Spec.NodeName)) == 0 {
			t.Errorf("no attestation of the agent of %s, which served %s", other.Spec.NodeName, otherID)
		}
		// Attest as the agent of this node, with a token bound to its pod.
		tok, err := kube.Client.CoreV1().ServiceAccounts(storeNS).CreateToken(t.Context(), install.AgentName, &authv1.TokenRequest{Spec: authv1.TokenRequestSpec{
			Audiences:      []string{agentapi.TokenAudience},
			BoundObjectRef: &authv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: agentPod.Name, UID: agentPod.UID},
		}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		authorityID := spiffeid.RequireFromSegments(trustDomain, "ns", storeNS, "sa", "kzero-authority")
		bundle := trustBundle(t)
		key, csr := catest.NewCSR(t)
		var att agentapi.AttestResponse
		tlsClient := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsconfig.TLSClientConfig(bundle, tlsconfig.AuthorizeID(authorityID))}}
		if code := postJSON(t, tlsClient, api.addr, agentapi.AttestPath, agentapi.AttestRequest{Token: tok.Status.Token, CSR: csr}, &att); code != http.StatusOK {
			t.Fatalf("attest: %d", code)
		}
		svid, err := x509svid.ParseRaw(bytes.Join(att.Chain, nil), mustPKCS8(t, key))
		if err != nil {
			t.Fatal(err)
		}
		mtls := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsconfig.MTLSClientConfig(svid, bundle, tlsconfig.AuthorizeID(authorityID))}}
		_, csr2 := catest.NewCSR(t)
		var refusal agentapi.Error
		if code := postJSON(t, mtls, api.addr, agentapi.X509SVIDPath, agentapi.X509SVIDRequest{ID: otherID, CSR: csr2}, &refusal); code != http.StatusForbidden {
			t.Fatalf("the X.509-SVID of a pod of node %s: %d %q, want 403", other.Spec.NodeName, code, refusal.Error)
		}
		t.Logf("refused: %s", refusal.Error)
		waitEvent(t, api.out, "the refusal", func(e audit.Event) bool {
			return e.Kind == audit.KindIssuance && e.Outcome == audit.OutcomeFailure && e.Issuance != nil &&
				e.Issuance.SPIFFEID.String() == otherID && strings.Contains(e.Reason, agentPod.Spec.NodeName)
		})
	})

	t.Run("the authority down longer than the agent's SVID, then back", func(t *testing.T) {
		before := len(serials(podLog(t, enrolled, "workload"), wantID))
		attested := len(attestations(t, apiOut, agentPod.Spec.NodeName))
		api.stop()
		down := testAgentSVIDTTL + 15*time.Second
		t.Logf("the agent API is down for %s", down)
		time.Sleep(down)
		startAgentAPI(t, client, storeNS, api.addr, a, apiOut)
		// The agent attests again by itself, and the workload's stream
		// carries a fresh SVID.
		waitSerials(t, enrolled, "workload", wantID, before+1, 2*time.Minute)
		if n := len(attestations(t, apiOut, agentPod.Spec.NodeName)); n <= attested {
			t.Errorf("%d attestations after the authority came back, %d before: the agent did not attest again", n, attested)
		}
		pod := testPod("later")
		pod.Spec.ServiceAccountName = "web"
		pod.Spec.Containers[0].Image = workloadImage
		createPod(t, enrolled, pod)
		waitLog(t, enrolled, "later", "jwt-bundle: "+wantID+"\n", 2*time.Minute)
	})
}

// restrict makes namespace ns enforce Pod Security restricted.
func restrict(t testing.TB, ns string) {
	t.Helper()
	patch := []byte(`{"metadata":{"labels":{"pod-security.kubernetes.io/enforce":"restricted"}}}`)
	if _, err := kube.Client.CoreV1().Namespaces().Patch(t.Context(), ns, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatalf("label namespace %s restricted: %v", ns, err)
	}
}

// otherNodePod runs a workload pod of ns as service account other on a
// node other than node, and waits until it runs.
func otherNodePod(t *testing.T, ns, node string) *corev1.Pod {
	t.Helper()
	ctx := t.Context()
	elsewhere := ""
	for _, n := range kube.Nodes {
		if n.Name != node {
			elsewhere = n.Name
			break
		}
	}
	if elsewhere == "" {
		t.Fatalf("the cluster has only node %s, and this test needs a second: run 'make cluster-down cluster-up NODES=2'", node)
	}
	if _, err := kube.Client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "other"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := testPod("elsewhere")
	pod.Spec.ServiceAccountName = "other"
	pod.Spec.NodeName = elsewhere
	pod.Spec.Containers[0].Image = workloadImage
	createPod(t, ns, pod)
	return waitPod(t, ns, pod.Name, 2*time.Minute, ready)
}

// serials are the serials of the X.509-SVIDs for id a workload pod's log
// shows on its stream, each once, in order.
func serials(log, id string) []string {
	var out []string
	for _, line := range strings.Split(log, "\n") {
		var n int
		var got, serial string
		if _, err := fmt.Sscanf(line, "stream %d: %s serial %s verified", &n, &got, &serial); err != nil || got != id {
			continue
		}
		if len(out) == 0 || out[len(out)-1] != serial {
			out = append(out, serial)
		}
	}
	return out
}

// waitSerials waits until the workload's stream has shown n different
// X.509-SVIDs for id.
func waitSerials(t testing.TB, ns, name, id string, n int, timeout time.Duration) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), time.Second, timeout, true, func(context.Context) (bool, error) {
		return len(serials(podLog(t, ns, name), id)) >= n, nil //nolint:contextcheck // podLog reads with the test's context
	})
	if err != nil {
		t.Fatalf("pod %s/%s did not get %d SVIDs on its stream: %v; log:\n%s", ns, name, n, err, podLog(t, ns, name))
	}
	t.Logf("%d SVIDs on the stream of %s/%s", n, ns, name)
}

// attestations are the successful attestations of the agent of node in
// the agent API's audit stream.
func attestations(t testing.TB, out *syncBuffer, node string) []audit.Event {
	var got []audit.Event
	for _, e := range out.events(t) {
		if e.Kind == audit.KindIssuance && e.Outcome == audit.OutcomeSuccess && e.Issuance.Requester == "node/"+node {
			got = append(got, e)
		}
	}
	return got
}

// waitLog waits until the pod's log holds want.
func waitLog(t testing.TB, ns, name, want string, timeout time.Duration) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), time.Second, timeout, true, func(context.Context) (bool, error) {
		return strings.Contains(podLog(t, ns, name), want), nil //nolint:contextcheck // podLog reads with the test's context
	})
	if err != nil {
		t.Fatalf("pod %s/%s did not print %q: %v; log:\n%s", ns, name, want, err, podLog(t, ns, name))
	}
}

// postJSON posts in as JSON to the agent API at addr and decodes the
// answer into out; it returns the status code.
func postJSON(t testing.TB, c *http.Client, addr, path string, in, out any) int {
	t.Helper()
	body, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "https://"+addr+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("POST %s: %d, body: %v", path, resp.StatusCode, err)
	}
	return resp.StatusCode
}

// mustPKCS8 is key in PKCS#8 DER.
func mustPKCS8(t testing.TB, key any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// BenchmarkAgentMemory measures the agent's resident memory once it
// serves 100 pods, each under a service account of its own (100
// identities), each holding a FetchX509SVID stream open on a connection
// of its own: the most of seven readings 5 s apart, and its parts, the
// anonymous memory (heap, stacks, the runtime's) and the binary's pages:
//
//	go test -tags e2e -run '^$' -bench AgentMemory -benchtime 1x ./test/e2e/
func BenchmarkAgentMemory(b *testing.B) {
	if err := loadAgentImages(); err != nil {
		b.Fatal(err)
	}
	client, storeNS, _, a := webhookSetup(b)
	api := startAgentAPI(b, client, storeNS, net.JoinHostPort(nodeIP, "0"), a, &syncBuffer{})
	startAgent(b, storeNS, api.addr)
	ns := enrolledNamespace(b)
	// Every pod on the first node, whose agent the benchmark measures.
	node := kube.Nodes[0].Name
	const pods = 100
	for i := range pods {
		name := fmt.Sprintf("id-%03d", i)
		if _, err := kube.Client.CoreV1().ServiceAccounts(ns).Create(b.Context(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		pod := testPod(name)
		pod.Spec.ServiceAccountName = name
		pod.Spec.Containers[0].Image = workloadImage
		pod.Spec.NodeName = node
		createPod(b, ns, pod)
	}
	for i := range pods {
		name := fmt.Sprintf("id-%03d", i)
		waitLog(b, ns, name, fmt.Sprintf("stream 1: spiffe://cluster.local/ns/%s/sa/%s serial ", ns, name), 5*time.Minute)
	}
	for range b.N {
		// The most over 30 s: the SVIDs of the test's short lifetime are
		// renewed meanwhile, and the heap between two collections varies.
		most := mostMemory(b, node, 7)
		b.ReportMetric(float64(most["VmRSS"])/(1<<20), "agent-RSS-MiB")
		b.ReportMetric(float64(most["RssAnon"])/(1<<20), "anon-MiB")
		b.ReportMetric(float64(most["RssFile"])/(1<<20), "file-MiB")
		// The CSI driver, in the pod's other container, after it has
		// mounted the 100 pods' volumes.
		csi, err := agentMemory(node, true)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(csi["VmRSS"])/(1<<20), "csi-driver-RSS-MiB")
	}
}

// agentMemory is the resident memory of the one kzero agent process of
// node (with csi, of its CSI driver), in bytes, from /proc/<pid>/status:
// VmRSS, and its parts RssAnon (heap, stacks) and RssFile (the binary's
// pages).
func agentMemory(node string, csi bool) (map[string]int64, error) {
	pid, err := agentProcess(node, csi)
	if err != nil {
		return nil, err
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	m := map[string]int64{}
	for _, line := range strings.Split(string(status), "\n") {
		var key string
		var kb int64
		if _, err := fmt.Sscanf(line, "%s %d kB", &key, &kb); err == nil {
			m[strings.TrimSuffix(key, ":")] = kb << 10
		}
	}
	return m, nil
}

// agentProcess is the PID of the one kzero agent process of node (with
// csi, of its CSI driver).
func agentProcess(node string, csi bool) (int, error) {
	init, err := kube.NodeInit(node)
	if err != nil {
		return 0, err
	}
	// The agent runs in its node's PID namespace (hostPID), the init's.
	nodePIDNS, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", init))
	if err != nil {
		return 0, err
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile("/proc/" + p.Name() + "/cmdline")
		if err != nil || !bytes.HasPrefix(cmd, []byte(install.AgentBinary+"\x00")) ||
			bytes.HasPrefix(cmd, []byte(install.AgentBinary+"\x00csi-driver\x00")) != csi {
			continue
		}
		if ns, err := os.Readlink("/proc/" + p.Name() + "/ns/pid"); err != nil || ns != nodePIDNS {
			continue
		}
		return pid, nil
	}
	return 0, fmt.Errorf("no %s process on node %s", install.AgentBinary, node)
}

// unchainCNI takes kzero's CNI plugin out of every node's network
// configuration, and the agent's list of enrolled namespaces with it, as
// an uninstall would.
func unchainCNI(t testing.TB) {
	for _, n := range kube.Nodes {
		dir, err := kube.NodePath(n.Name, install.DefaultCNIConfDir)
		if err != nil {
			t.Error(err)
			continue
		}
		if err := cni.Unchain(dir); err != nil {
			t.Errorf("node %s: %v", n.Name, err)
		}
		if f, err := kube.NodePath(n.Name, cni.EnrolledFile); err == nil {
			_ = os.Remove(f)
		}
	}
}
