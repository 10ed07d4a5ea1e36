//go:build e2e

package e2e

import (
	"bytes"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"kzero.dev/kzero/internal/cli"
	"kzero.dev/kzero/internal/policysync"
)

// TestPolicyTestFromCluster: `kzero policy test` answers from the cluster's
// AccessPolicies and the namespace's enrollment labels.
func TestPolicyTestFromCluster(t *testing.T) {
	dyn, err := dynamic.NewForConfig(kube.Config)
	if err != nil {
		t.Fatal(err)
	}
	installCRD(t, dyn)
	enrolled, plain := namespace(t), namespace(t)
	nsObj, err := kube.Client.CoreV1().Namespaces().Get(t.Context(), enrolled, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nsObj.Labels["kzero.dev/enrolled"] = "true"
	if _, err := kube.Client.CoreV1().Namespaces().Update(t.Context(), nsObj, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kzero.dev/v1alpha1", "kind": "AccessPolicy",
		"metadata": map[string]any{"name": "cart", "namespace": enrolled},
		"spec": map[string]any{
			"selector": map[string]any{"serviceAccounts": []any{"cart"}, "matchLabels": map[string]any{"app": "cart"}},
			"rules": []any{map[string]any{"name": "frontend",
				"from": []any{map[string]any{"spiffeIDs": []any{"spiffe://cluster.local/ns/web/sa/frontend"}}},
				"to":   []any{map[string]any{"ports": []any{int64(8080)}}}}},
		},
	}}
	if _, err := dyn.Resource(policysync.GVR).Namespace(enrolled).Create(t.Context(), u, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The destination's labels come from a pod of its service account
	// (found by a field selector, not by listing the namespace); another
	// account's pod, listed first, has other labels.
	for _, sa := range []string{"cart", "other"} {
		if _, err := kube.Client.CoreV1().ServiceAccounts(enrolled).Create(t.Context(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	decoy := testPod("a-other")
	decoy.Spec.ServiceAccountName = "other"
	cart := testPod("cart")
	cart.Spec.ServiceAccountName = "cart"
	createPod(t, enrolled, decoy)
	createPod(t, enrolled, cart)
	for _, tc := range []struct {
		name, from, ns string
		port           string
		out            string
		code           int
	}{
		{"allowed", "spiffe://cluster.local/ns/web/sa/frontend", enrolled, "8080", "allow: allowed by " + enrolled + "/cart rule frontend\n", 0},
		{"other port", "spiffe://cluster.local/ns/web/sa/frontend", enrolled, "9090", "deny: no rule matched: default deny\n", 3},
		{"other source", "spiffe://cluster.local/ns/web/sa/intruder", enrolled, "8080", "deny: no rule matched: default deny\n", 3},
		{"namespace not enrolled", "spiffe://cluster.local/ns/web/sa/intruder", plain, "8080", "allow: namespace not enrolled: kzero does not decide\n", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			cmd := cli.New(&out, &out)
			cmd.SetArgs([]string{"policy", "test", "--kubeconfig", kube.Kubeconfig,
				"--from", tc.from, "--to", "spiffe://cluster.local/ns/" + tc.ns + "/sa/cart", "--port", tc.port})
			err := cmd.ExecuteContext(t.Context())
			if out.String() != tc.out || cli.ExitCode(err) != tc.code {
				t.Errorf("got %q exit %d (%v), want %q exit %d", out.String(), cli.ExitCode(err), err, tc.out, tc.code)
			}
		})
	}
}
