package install_test

import (
	"bufio"
	"bytes"
	"flag"
	"os"
	"strings"
	"testing"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

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
	for _, k := range []string{"Namespace", "CustomResourceDefinition", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
		"Role", "RoleBinding", "Deployment", "Service", "PodDisruptionBudget", "MutatingWebhookConfiguration"} {
		if kinds[k] != 1 {
			t.Errorf("%d %s, want 1", kinds[k], k)
		}
	}
}

func TestRenderRefusals(t *testing.T) {
	_, err := install.Render(install.Options{Namespace: "Bad_NS", TrustDomain: "Not A Domain", Replicas: -1, PullPolicy: "Sometimes"})
	want := []string{
		"install: image: required: name the kzero image to run, such as registry.example/kzero:v0.1.0",
		`namespace: "Bad_NS"`,
		`trustDomain: "Not A Domain"`,
		"replicas: -1: at least 1",
		`pullPolicy: "Sometimes" is not Always, IfNotPresent or Never`,
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
