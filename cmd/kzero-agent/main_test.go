package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLinksOnlyTheAgent: kzero-agent's memory on every node is mostly its
// binary and what the packages linked in set up at start, so it must not
// link what only the authority or the command line needs. Each of these
// once cost megabytes of resident memory (docs/agent.md, Memory).
func TestLinksOnlyTheAgent(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := map[string]bool{}
	for _, p := range strings.Fields(string(out)) {
		deps[p] = true
	}
	for _, p := range []string{
		"kzero.dev/kzero/internal/authority", // and through it the CA store, leader election, policy
		"kzero.dev/kzero/internal/cli",       // every other command
		"github.com/google/cel-go/cel",       // the policy engine
		"github.com/prometheus/client_golang/prometheus",
		"k8s.io/client-go/kubernetes",        // the clientset: every API group's client and types
		"k8s.io/client-go/informers",         // every API group's informers
		"k8s.io/client-go/kubernetes/scheme", // registers every API group
	} {
		if deps[p] {
			t.Errorf("kzero-agent links %s: see what imports it with go list -deps -f '{{.ImportPath}} {{.Imports}}' ./cmd/kzero-agent", p)
		}
	}
	if !deps["kzero.dev/kzero/internal/agent"] {
		t.Error("kzero-agent does not link the agent")
	}
}
