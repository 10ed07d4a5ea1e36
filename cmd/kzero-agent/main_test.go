package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"kzero.dev/kzero/internal/version"
)

// TestLinksOnlyTheAgent: kzero-agent's memory on every node is mostly its
// binary and what the packages linked in set up at start, so it must not
// link what only the authority or the command line needs. Each of these
// once cost megabytes of resident memory (docs/agent.md, Memory). The
// mesh brought in two that were kept out before: the policy engine (and
// cel-go with it), which decides the tunnel's streams, and the Prometheus
// client, which serves the mesh's metrics.
func TestLinksOnlyTheAgent(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := map[string]bool{}
	for _, p := range strings.Fields(string(out)) {
		deps[p] = true
	}
	for p := range deps {
		if strings.HasPrefix(p, "k8s.io/api/") { // core/v1: 241 types, all linked
			t.Errorf("kzero-agent links %s: internal/kubeobj has the objects the agent reads", p)
		}
		if strings.HasPrefix(p, "k8s.io/kubelet/") && p != "k8s.io/kubelet/pkg/apis/pluginregistration/v1" {
			t.Errorf("kzero-agent links %s: of kubelet's module, the CSI driver needs only its plugin registration API", p)
		}
	}
	for _, p := range []string{
		"kzero.dev/kzero/internal/authority", // and through it the CA store, leader election, policy
		"kzero.dev/kzero/internal/cli",       // every other command
		"k8s.io/client-go/kubernetes",        // the clientset: every API group's client and types
		"k8s.io/client-go/informers",         // every API group's informers
		"k8s.io/client-go/kubernetes/scheme", // registers every API group
	} {
		if deps[p] {
			t.Errorf("kzero-agent links %s: see what imports it with go list -deps -f '{{.ImportPath}} {{.Imports}}' ./cmd/kzero-agent", p)
		}
	}
	for _, p := range []string{"kzero.dev/kzero/internal/agent", "kzero.dev/kzero/internal/csidriver", "kzero.dev/kzero/internal/meshnode"} {
		if !deps[p] {
			t.Errorf("kzero-agent does not link %s", p)
		}
	}
}

// TestKeepsNoMethodForReflection: a binary that can call a method by a
// name it learns at run time (text/template does, for {{.Name}}) keeps
// every exported method of every type it links, used or not. For
// kzero-agent that was 4.6 MB of its 23, most of it resident. It is built
// here with the build tags hack/cluster/image.sh builds the image with,
// and the linker must find no such call.
func TestKeepsNoMethodForReflection(t *testing.T) {
	if testing.Short() {
		t.Skip("links the agent: about 10 s")
	}
	script, err := os.ReadFile(filepath.Join("..", "..", "hack", "cluster", "image.sh"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`\bgobuild=\(.* -tags (\S+) `).FindSubmatch(script)
	if m == nil || !strings.Contains(string(m[1]), "grpcnotrace") {
		t.Fatal("hack/cluster/image.sh builds without -tags grpcnotrace: gRPC's golang.org/x/net/trace would run html/template")
	}
	cmd := exec.Command("go", "build", "-trimpath", "-tags", string(m[1]), "-ldflags", "-s -w -dumpdep", "-o", filepath.Join(t.TempDir(), "kzero-agent"), ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	deps, err := cmd.CombinedOutput() // -dumpdep: every edge of the linker's reachability graph
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, tail(string(deps), 2000))
	}
	if !strings.Contains(string(deps), " -> main.main\n") {
		t.Fatalf("go build -ldflags=-dumpdep printed no edge to main.main: its format changed, and this test must follow it:\n%s", tail(string(deps), 2000))
	}
	found := map[string]bool{}
	for line := range strings.Lines(string(deps)) {
		for _, sym := range strings.Split(strings.TrimSpace(line), " -> ") {
			if name, ok := strings.CutSuffix(sym, " <ReflectMethod>"); ok {
				found[name] = true
			}
		}
	}
	for name := range found {
		t.Errorf("kzero-agent calls methods by name through reflection in %s: every exported method stays linked; see who reaches it with go build -ldflags=-dumpdep", name)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// --version says which kzero-agent this is, in cobra's words.
func TestVersion(t *testing.T) {
	cmd := command()
	var out strings.Builder
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"--version"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	v := version.Get()
	if want := "kzero-agent version " + v.Version + " (commit " + v.Commit + ", " + v.GoVersion + ")\n"; out.String() != want {
		t.Errorf("--version printed %q, want %q", out.String(), want)
	}
}
