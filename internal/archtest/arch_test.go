package archtest

import (
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
)

type pkg struct {
	ImportPath string
	Name       string
	Doc        string
	Imports    []string
	Deps       []string
}

// listPackages runs `go list` over the whole module.
func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json=ImportPath,Name,Doc,Imports,Deps", "kzero.dev/kzero/...")
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) == 0 {
		t.Fatal("go list found no packages")
	}
	return pkgs
}

func TestEveryPackageHasADocComment(t *testing.T) {
	for _, p := range listPackages(t) {
		if p.Doc == "" {
			t.Errorf("package %s has no doc comment: add one saying what it is for", p.ImportPath)
		}
	}
}

// pure lists packages that decide (identity, policy) and must stay free of
// I/O libraries: the network and Kubernetes clients belong to the
// controllers that call them.
var pure = map[string]struct{ direct, anywhere []string }{
	"kzero.dev/kzero/internal/policy": {
		direct:   []string{"os", "net", "net/http", "os/exec"},
		anywhere: []string{"k8s.io/client-go", "sigs.k8s.io/controller-runtime", "google.golang.org/grpc"},
	},
	"kzero.dev/kzero/internal/ca": {
		direct:   []string{"os", "net", "net/http", "os/exec"},
		anywhere: []string{"k8s.io/client-go", "sigs.k8s.io/controller-runtime", "google.golang.org/grpc", "net/http"},
	},
	// kubeobj is the agent's view of a few API objects: types, no client.
	"kzero.dev/kzero/internal/kubeobj": {
		direct:   []string{"os", "net", "net/http", "os/exec"},
		anywhere: []string{"k8s.io/client-go", "google.golang.org/grpc", "k8s.io/api"},
	},
	// podattest reads /proc and watches the node's pods, but knows nothing
	// of gRPC: the Workload API adapts its callers to it, never the reverse.
	"kzero.dev/kzero/internal/podattest": {
		direct:   []string{"net", "net/http", "os/exec"},
		anywhere: []string{"google.golang.org/grpc", "kzero.dev/kzero/internal/workloadapi"},
	},
}

func TestDependenciesRunOneWay(t *testing.T) {
	for _, p := range listPackages(t) {
		rule, ok := pure[p.ImportPath]
		if !ok {
			continue
		}
		for _, imp := range p.Imports {
			for _, bad := range rule.direct {
				if imp == bad {
					t.Errorf("%s imports %s: it must do no I/O of its own; take it through an interface", p.ImportPath, imp)
				}
			}
		}
		for _, dep := range p.Deps {
			for _, bad := range rule.anywhere {
				if dep == bad || strings.HasPrefix(dep, bad+"/") {
					t.Errorf("%s depends on %s, which its rule in pure forbids: types and decisions must not pull in network or Kubernetes clients (nor, for kubeobj, k8s.io/api)", p.ImportPath, dep)
				}
			}
		}
	}
}

// apartFromKubernetes lists packages that do their I/O (sockets, gRPC) but
// never talk to the Kubernetes API: what they need of the cluster comes
// through a small interface (the Workload API's Attestor), so that they
// are tested, and run outside a cluster, without one.
var apartFromKubernetes = map[string]bool{
	"kzero.dev/kzero/internal/workloadapi": true,
	"kzero.dev/kzero/internal/tunnel":      true,
	"kzero.dev/kzero/internal/redirect":    true,
	"kzero.dev/kzero/internal/mesh":        true,
}

// kubernetesLibraries are the modules apartFromKubernetes must not pull in.
var kubernetesLibraries = []string{"k8s.io/client-go", "k8s.io/api", "k8s.io/apimachinery", "sigs.k8s.io/controller-runtime"}

func TestKubernetesStaysOut(t *testing.T) {
	seen := map[string]bool{}
	for _, p := range listPackages(t) {
		if !apartFromKubernetes[p.ImportPath] {
			continue
		}
		seen[p.ImportPath] = true
		for _, dep := range p.Deps {
			for _, bad := range kubernetesLibraries {
				if dep == bad || strings.HasPrefix(dep, bad+"/") {
					t.Errorf("%s depends on %s: it must not talk to the Kubernetes API; take what it needs through an interface its caller implements", p.ImportPath, dep)
				}
			}
		}
	}
	for path := range apartFromKubernetes {
		if !seen[path] {
			t.Errorf("%s is listed in apartFromKubernetes but go list does not find it: update the list", path)
		}
	}
}
