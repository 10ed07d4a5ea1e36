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
					t.Errorf("%s depends on %s: identity and policy code must not pull in network or Kubernetes clients", p.ImportPath, dep)
				}
			}
		}
	}
}
