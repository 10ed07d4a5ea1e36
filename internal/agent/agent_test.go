package agent_test

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	spiffewl "github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"kzero.dev/kzero/api/v1alpha1"
	"kzero.dev/kzero/internal/agent"
	"kzero.dev/kzero/internal/agentapi"
)

const (
	podUID       = "3a60b6d9-852f-40bc-bfa6-9e8891d96dbe"
	containerID  = "6f79cfd97bd71200b07eaff6f353f6cd98b4fda4a571f35279ddae1e29924615"
	podCgroupDir = "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod3a60b6d9_852f_40bc_bfa6_9e8891d96dbe.slice"
)

// The whole agent, on this machine: it attests to the authority (the
// stand-in), reads the node's pods and the namespaces from an API server
// (client-go's fake clientset: the real API server runs in the end-to-end
// test), and serves the Workload API on its socket, where go-spiffe's
// client, this test's process, is taken for a container of pod shop/web-0
// (by a procfs made for the test, whose cgroup file names that pod and
// container) and gets its service account's SVID, until its namespace is
// no longer enrolled.
func TestAgentServesTheWorkloadAPIToThePodsOfEnrolledNamespaces(t *testing.T) {
	s := newStandin(t, standinConfig{})
	files := newAgentFiles(t, s)
	kube := fake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{v1alpha1.EnrolledLabel: "true"}}},
		&corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "web-0", Namespace: "shop", UID: podUID},
			Spec:       corev1.PodSpec{NodeName: node, ServiceAccountName: "web", Containers: []corev1.Container{{Name: "app"}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{
				Name: "app", ContainerID: "containerd://" + containerID,
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
			}}},
		},
	)
	sock := filepath.Join(t.TempDir(), "agent.sock")
	a, err := agent.New(agent.Config{
		NodeName: node, TrustDomain: td, AuthorityURL: s.url, AuthorityID: authorityID,
		BundleFile: files.bundle, TokenFile: files.token, SocketPath: sock,
		Kube: clientsetKube{kube}, Log: testLog(t), Now: s.clock.Now, ProcRoot: fakeProc(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	run(t, a.Run)
	eventually(t, "the socket", func() bool { _, err := os.Stat(sock); return err == nil })
	addr := spiffewl.WithAddr("unix://" + sock)

	var svid *x509svid.SVID
	eventually(t, "an X.509-SVID", func() bool {
		svid, err = spiffewl.FetchX509SVID(t.Context(), addr)
		return err == nil // Unavailable until the first attestation and bundle
	})
	if svid.ID != webID {
		t.Errorf("the workload got %s, want %s", svid.ID, webID)
	}
	if got := s.calls(); len(got) == 0 || got[0] != agentID.String()+" "+agentapi.X509SVIDPath+" "+webID.String() {
		t.Errorf("the authority was asked %q, want the X.509-SVID of %s by %s", got, webID, agentID)
	}
	jwt, err := spiffewl.FetchJWTSVID(t.Context(), jwtsvid.Params{Audience: "api"}, addr)
	if err != nil || jwt.ID != webID || !slices.Equal(jwt.Audience, []string{"api"}) {
		t.Errorf("the workload's JWT-SVID: %v, %v", jwt, err)
	}
	if a.Client().Chain() == nil {
		t.Error("Client().Chain() is nil once attested")
	}

	// The namespace is no longer enrolled: the caller is refused, and told
	// why.
	ns, err := kube.CoreV1().Namespaces().Get(t.Context(), "shop", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ns.Labels = nil
	if _, err := kube.CoreV1().Namespaces().Update(t.Context(), ns, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the refusal", func() bool {
		_, err := spiffewl.FetchX509SVID(t.Context(), addr)
		return status.Code(err) == codes.PermissionDenied
	})
	_, err = spiffewl.FetchX509SVID(t.Context(), addr)
	if msg := status.Convert(err).Message(); msg != "the caller's namespace is not enrolled in kzero" {
		t.Errorf("the refusal says %q", msg)
	}
}

// fakeProc is a procfs that holds this process only: its real stat, and a
// cgroup file of the container containerID of pod podUID.
func fakeProc(t *testing.T) string {
	t.Helper()
	stat, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Skipf("no procfs: %v", err)
	}
	root := t.TempDir()
	dir := filepath.Join(root, strconv.Itoa(os.Getpid()))
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	cgroup := "0::" + podCgroupDir + "/cri-containerd-" + containerID + ".scope\n"
	for name, content := range map[string][]byte{"stat": stat, "cgroup": []byte(cgroup)} {
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestNewChecksTheConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  agent.Config
		want string
	}{
		{"no kube", agent.Config{}, "agent: invalid config: kube: required"},
		{"no node", agent.Config{Kube: clientsetKube{fake.NewClientset()}}, "agent: invalid client config: url: required\ntrustDomain: required\n" +
			"nodeName: required\nauthorityID: required\nbundleFile: required\ntokenFile: required\nlog: required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := agent.New(tc.cfg)
			if err == nil || err.Error() != tc.want {
				t.Errorf("New: %v\nwant %s", err, tc.want)
			}
		})
	}
}
