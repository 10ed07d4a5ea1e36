package install_test

import (
	"bufio"
	"bytes"
	"flag"
	"os"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"kzero.dev/kzero/internal/authority"
	"kzero.dev/kzero/internal/install"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.yaml")

// TestRenderGolden pins the manifests with their defaults: a change to
// what kzero installs shows in review as a change to the golden file.
func TestRenderGolden(t *testing.T) {
	got, err := install.Render(install.Options{Image: "kzero.local/kzero:test"})
	if err != nil {
		t.Fatal(err)
	}
	const golden = "testdata/install.golden.yaml"
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run TestRenderGolden -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("rendered manifests differ from %s; if the change is meant, run go test ./internal/install -run TestRenderGolden -update", golden)
	}
	kinds := map[string]int{}
	wantKinds := map[string]int{"Namespace": 1, "CustomResourceDefinition": 1, "ServiceAccount": 2, "ClusterRole": 2, "ClusterRoleBinding": 2,
		"Role": 1, "RoleBinding": 1, "Deployment": 1, "Service": 1, "PodDisruptionBudget": 1, "CSIDriver": 1, "DaemonSet": 1, "MutatingWebhookConfiguration": 1,
		"ValidatingWebhookConfiguration": 1}
	r := utilyaml.NewYAMLReader(bufioReader(got))
	for {
		doc, err := r.Read()
		if err != nil {
			break
		}
		var obj struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal(doc, &obj); err != nil || obj.APIVersion == "" || obj.Kind == "" {
			if len(bytes.TrimSpace(doc)) > 0 && !bytes.HasPrefix(bytes.TrimSpace(doc), []byte("#")) {
				t.Errorf("a document without apiVersion and kind: %v\n%s", err, doc)
			}
			continue
		}
		kinds[obj.Kind]++
	}
	for k, n := range wantKinds {
		if kinds[k] != n {
			t.Errorf("%d %s, want %d", kinds[k], k, n)
		}
	}
	for k, n := range kinds {
		if _, ok := wantKinds[k]; !ok {
			t.Errorf("%d %s, want none", n, k)
		}
	}
}

// TestAgentApartFromAuthority: the authority's Service and
// PodDisruptionBudget select none of the agent's pods, and the agent's
// DaemonSet none of the authority's.
func TestAgentApartFromAuthority(t *testing.T) {
	out, err := install.Render(install.Options{Image: "kzero.local/kzero:test"})
	if err != nil {
		t.Fatal(err)
	}
	var (
		svc corev1.Service
		pdb policyv1.PodDisruptionBudget
		dep appsv1.Deployment
		ds  appsv1.DaemonSet
	)
	r := utilyaml.NewYAMLReader(bufioReader(out))
	for {
		doc, err := r.Read()
		if err != nil {
			break
		}
		var obj struct{ Kind string }
		_ = yaml.Unmarshal(doc, &obj)
		into := map[string]any{"Service": &svc, "PodDisruptionBudget": &pdb, "Deployment": &dep, "DaemonSet": &ds}[obj.Kind]
		if into == nil {
			continue
		}
		if err := yaml.UnmarshalStrict(doc, into); err != nil {
			t.Fatalf("%s: %v", obj.Kind, err)
		}
	}
	agentPods, authorityPods := labels.Set(ds.Spec.Template.Labels), labels.Set(dep.Spec.Template.Labels)
	pdbSel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil {
		t.Fatal(err)
	}
	dsSel, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		what  string
		sel   labels.Selector
		pods  labels.Set
		match bool
	}{
		{"the Service selects the authority", labels.SelectorFromSet(svc.Spec.Selector), authorityPods, true},
		{"the Service selects the agent", labels.SelectorFromSet(svc.Spec.Selector), agentPods, false},
		{"the PodDisruptionBudget selects the agent", pdbSel, agentPods, false},
		{"the DaemonSet selects its pods", dsSel, agentPods, true},
		{"the DaemonSet selects the authority", dsSel, authorityPods, false},
	} {
		if got := c.sel.Matches(c.pods); got != c.match {
			t.Errorf("%s: %v, want %v", c.what, got, c.match)
		}
	}
}

// TestNamesAgreeWithAuthority: the agent runs as the service account and
// DaemonSet the authority attests agents of by default.
func TestNamesAgreeWithAuthority(t *testing.T) {
	for what, want := range map[string]string{"service account": authority.DefaultAgentServiceAccount, "DaemonSet": authority.DefaultAgentDaemonSet} {
		if install.AgentName != want {
			t.Errorf("the agent's %s is %s; the authority expects %s", what, install.AgentName, want)
		}
	}
}

func TestRenderRefusals(t *testing.T) {
	_, err := install.Render(install.Options{Namespace: "Bad_NS", TrustDomain: "Not A Domain", Replicas: -1, PullPolicy: "Sometimes", KubeletDir: "var/lib/kubelet"})
	want := []string{
		"install: image: required: name the kzero image to run, such as registry.example/kzero:v0.1.0",
		`namespace: "Bad_NS"`,
		`trustDomain: "Not A Domain"`,
		"replicas: -1: at least 1",
		`pullPolicy: "Sometimes" is not Always, IfNotPresent or Never`,
		`kubeletDir: "var/lib/kubelet": want kubelet's root directory on the nodes (its --root-dir), an absolute, clean path such as /var/lib/kubelet`,
	}
	if err == nil {
		t.Fatal("Render accepted bad options")
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
}

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }
