//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"

	"kzero.dev/kzero/api/v1alpha1"
	"kzero.dev/kzero/internal/audit"
	"kzero.dev/kzero/internal/cli"
	"kzero.dev/kzero/internal/install"
)

// testAuditInterval is how often the in-cluster authority of the audit
// test checkpoints its audit stream.
const testAuditInterval = 2 * time.Second

// TestAuditTrailInCluster is issue 13's acceptance of the audit trail on
// the real cluster: the authority, run in the cluster as kzero install
// ships it, writes its audit events on stdout hash-chained, with
// checkpoints signed by its own SVID; what kubectl logs shows of its pod
// (stdout and stderr merged) verifies with kzero audit verify --stream and
// the default signer, and fails when one audit line is removed.
func TestAuditTrailInCluster(t *testing.T) {
	if err := loadAgentImages(); err != nil {
		t.Fatal(err)
	}
	if err := loadPodcert(); err != nil {
		t.Fatal(err)
	}
	if err := kube.CheckContained(t.Context()); err != nil {
		t.Fatal(err)
	}
	authority := installAuthority(t)
	ns := enrolledWithSA(t, "web")
	// Two pods, one after the other: two issuances, each audited.
	var requesters []string
	for _, name := range []string{"first", "second"} {
		createPod(t, ns, identityPod(name, "web"))
		pod := waitPod(t, ns, name, 2*time.Minute, ready)
		requesters = append(requesters, fmt.Sprintf("pod/%s/%s/%s", ns, pod.Name, pod.UID))
	}
	second := []byte(`"requester":"` + requesters[1] + `"`)

	// The issuances are audited, and a checkpoint follows within the
	// interval.
	var log []byte
	err := wait.PollUntilContextTimeout(t.Context(), time.Second, time.Minute, true, func(ctx context.Context) (bool, error) {
		log = authorityLog(ctx, t, authority, false)
		i := bytes.Index(log, second)
		return bytes.Contains(log, []byte(`"requester":"`+requesters[0]+`"`)) && i >= 0 && bytes.Contains(log[i:], []byte(`"kind":"checkpoint"`)), nil
	})
	if err != nil {
		t.Fatalf("no issuance events for %v followed by a checkpoint in the authority's log: %v\n%s", requesters, err, log)
	}
	dir := t.TempDir()
	bundle := filepath.Join(dir, "bundle.pem")
	ctb, err := kube.Client.CertificatesV1().ClusterTrustBundles().Get(t.Context(), v1alpha1.TrustBundleName("cluster.local"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bundle, []byte(ctb.Spec.TrustBundle), 0o600); err != nil {
		t.Fatal(err)
	}
	verify := func(name string, log []byte, args ...string) (string, error) {
		file := filepath.Join(dir, name)
		if err := os.WriteFile(file, log, 0o600); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		root := cli.New(&out, &out)
		root.SetArgs(append([]string{"audit", "verify", "--stream", file, "--bundle", bundle}, args...))
		err := root.Execute()
		return out.String(), err
	}

	t.Run("kubectl logs verifies with the default signer", func(t *testing.T) {
		out, err := verify("authority.log", log)
		t.Logf("kzero audit verify --stream:\n%s", out)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{": verified: ", "other lines skipped (not audit records)",
			"signed by spiffe://cluster.local/ns/kzero-system/sa/kzero-authority\n", "signers verified against " + bundle} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q", want)
			}
		}
	})

	t.Run("kubectl logs --timestamps verifies", func(t *testing.T) {
		if _, err := verify("timestamps.log", authorityLog(t.Context(), t, authority, true)); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("an audit line removed is found", func(t *testing.T) {
		var kept [][]byte
		removed := 0
		for _, l := range bytes.SplitAfter(log, []byte("\n")) {
			if removed == 0 && bytes.Contains(l, second) && bytes.HasPrefix(l, []byte(`{"schema":"kzero.dev/audit/v1"`)) {
				removed++
				continue
			}
			kept = append(kept, l)
		}
		if removed != 1 {
			t.Fatal("the second issuance's line is not in the log")
		}
		_, err := verify("removed.log", bytes.Join(kept, nil))
		if !errors.Is(err, audit.ErrSequence) || !strings.Contains(err.Error(), " was expected: records before it were removed") {
			t.Errorf("error %v, want the record after the removed one named", err)
		}
		t.Logf("one line removed: %v", err)
	})

	t.Run("another signer expected fails", func(t *testing.T) {
		_, err := verify("authority.log", log, "--signer", "spiffe://cluster.local/ns/kzero-system/sa/kzero-agent")
		if !errors.Is(err, audit.ErrUntrusted) {
			t.Errorf("error %v, want ErrUntrusted", err)
		}
	})
}

// installAuthority runs the authority in the cluster as kzero install
// ships it, with one replica that checkpoints its audit stream every
// testAuditInterval, in kzero-system, the namespace the default signer of
// kzero audit verify names; cluster-scoped objects get a suffix, and no
// webhook configuration is made (the test's pod asks for its certificate
// itself). It must be the only signer: it refuses to start beside another
// authority pod, and when the test ends it waits until the namespace, and
// so the authority, is gone.
func installAuthority(t *testing.T) *corev1.Pod {
	t.Helper()
	ctx := t.Context()
	ns := v1alpha1.Namespace
	pods, err := kube.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=kzero,app.kubernetes.io/component=authority"})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) > 0 {
		t.Fatalf("an authority already runs (pod %s/%s): this test must be the only signer", pods.Items[0].Namespace, pods.Items[0].Name)
	}
	manifests, err := install.Render(install.Options{Image: kzeroImage, Namespace: ns, Replicas: 1, PullPolicy: corev1.PullNever})
	if err != nil {
		t.Fatal(err)
	}
	objs := decodeManifests(t, manifests)
	const suffix = "-e2e-audit"
	core, rbac := kube.Client.CoreV1(), kube.Client.RbacV1()
	create := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("create %s: %v", what, err)
		}
	}
	for _, obj := range objs {
		switch o := obj.(type) {
		case *corev1.Namespace:
			_, err := core.Namespaces().Create(ctx, o, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				t.Fatalf("namespace %s exists: kzero may be installed in this cluster, and this test must be the only signer", ns)
			}
			create("namespace", err)
			t.Cleanup(func() { deleteNamespace(t, ns) })
		}
	}
	var deployment *appsv1.Deployment
	for _, obj := range objs {
		switch o := obj.(type) {
		case *corev1.ServiceAccount:
			if o.Name == install.Name {
				_, err := core.ServiceAccounts(ns).Create(ctx, o, metav1.CreateOptions{})
				create("service account", err)
			}
		case *rbacv1.ClusterRole:
			if o.Name == install.Name {
				o.Name += suffix
				_, err := rbac.ClusterRoles().Create(ctx, o, metav1.CreateOptions{})
				create("cluster role", err)
				t.Cleanup(func() { _ = rbac.ClusterRoles().Delete(context.Background(), o.Name, metav1.DeleteOptions{}) })
			}
		case *rbacv1.ClusterRoleBinding:
			if o.Name == install.Name {
				o.Name += suffix
				o.RoleRef.Name += suffix
				_, err := rbac.ClusterRoleBindings().Create(ctx, o, metav1.CreateOptions{})
				create("cluster role binding", err)
				t.Cleanup(func() { _ = rbac.ClusterRoleBindings().Delete(context.Background(), o.Name, metav1.DeleteOptions{}) })
			}
		case *rbacv1.Role:
			_, err := rbac.Roles(ns).Create(ctx, o, metav1.CreateOptions{})
			create("role", err)
		case *rbacv1.RoleBinding:
			_, err := rbac.RoleBindings(ns).Create(ctx, o, metav1.CreateOptions{})
			create("role binding", err)
		case *appsv1.Deployment:
			deployment = o
		}
	}
	if deployment == nil {
		t.Fatal("kzero install renders no Deployment")
	}
	c := &deployment.Spec.Template.Spec.Containers[0]
	c.Args = append(c.Args, "--audit-checkpoint-interval", testAuditInterval.String())
	t.Cleanup(func() {
		_ = kube.Client.CertificatesV1().ClusterTrustBundles().Delete(context.Background(), v1alpha1.TrustBundleName("cluster.local"), metav1.DeleteOptions{})
	})
	_, err = kube.Client.AppsV1().Deployments(ns).Create(ctx, deployment, metav1.CreateOptions{})
	create("deployment", err)
	var pod *corev1.Pod
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		l, err := core.Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=authority"})
		if err != nil || len(l.Items) != 1 {
			return false, nil
		}
		pod = &l.Items[0]
		return ready(pod)
	})
	if err != nil {
		state := "no pod"
		if pod != nil {
			state = fmt.Sprintf("phase %s, containers %v; log:\n%s", pod.Status.Phase, pod.Status.ContainerStatuses, podLog(t, ns, pod.Name))
		}
		t.Fatalf("the authority did not become ready: %v (%s)", err, state)
	}
	t.Logf("the authority runs in pod %s/%s", ns, pod.Name)
	return pod
}

// decodeManifests decodes kzero install's YAML stream into API objects,
// leaving out what client-go's scheme does not know (the CRD).
func decodeManifests(t *testing.T, manifests []byte) []runtime.Object {
	t.Helper()
	var objs []runtime.Object
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(manifests)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			t.Fatal(err)
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if runtime.IsNotRegisteredError(err) {
			continue
		}
		if err != nil {
			t.Fatalf("decode a manifest of kzero install: %v\n%s", err, doc)
		}
		objs = append(objs, obj)
	}
}

// deleteNamespace deletes ns and waits until it is gone, with its pods.
func deleteNamespace(t *testing.T, ns string) {
	ctx := context.Background()
	if err := kube.Client.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Errorf("delete namespace %s: %v", ns, err)
		return
	}
	err := wait.PollUntilContextTimeout(ctx, time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := kube.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		t.Errorf("namespace %s is not gone: %v", ns, err)
	}
}

// authorityLog is the authority pod's log as kubectl logs shows it, its
// standard output and error merged, with --timestamps if asked.
func authorityLog(ctx context.Context, t testing.TB, pod *corev1.Pod, timestamps bool) []byte {
	t.Helper()
	b, err := kube.Client.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{Timestamps: timestamps}).DoRaw(ctx)
	if err != nil {
		t.Fatalf("the authority's log: %v", err)
	}
	return b
}
