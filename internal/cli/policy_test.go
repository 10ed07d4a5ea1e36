package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"kzero.dev/kzero/internal/cli"
)

func TestPolicyLint(t *testing.T) {
	out, err := run("policy", "lint", "testdata/policies.yaml")
	if err != nil || out != "2 policies, 2 rules: OK\n" {
		t.Errorf("lint of good policies: %q, %v", out, err)
	}
	out, err = run("policy", "lint", "testdata/bad-policy.yaml")
	want := `policy shop/broken: spec.rules[0].to[0].ports[0]: 70000 is not a port: use 1 to 65535
policy shop/broken: spec.rules[0].to[0].methods[0]: "get" is not an HTTP method: write it in upper case, such as GET
policy shop/broken: spec.rules[0].when: has type string; a condition must be a bool
`
	if out != want || err == nil || err.Error() != "3 problem(s) in 1 of 1 policies" {
		t.Errorf("lint of a bad policy:\n%s\nerror %v\nwant\n%s", out, err, want)
	}
	if _, err := run("policy", "lint", "testdata/missing.yaml"); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("lint of a missing file: %v", err)
	}
	if _, err := run("policy", "lint", "testdata/policies.yaml", "testdata/policies.yaml"); err == nil ||
		err.Error() != "policy shop/allow-frontend is in testdata/policies.yaml and again in testdata/policies.yaml: the cluster would keep only one" {
		t.Errorf("lint of a file twice: %v", err)
	}
}

func TestPolicyTest(t *testing.T) {
	base := []string{"policy", "test", "-f", "testdata/policies.yaml", "--to", "spiffe://cluster.local/ns/shop/sa/cart", "--port", "8080"}
	for _, tc := range []struct {
		name string
		args []string
		out  string
		code int
	}{
		{"allowed", []string{"--from", "spiffe://cluster.local/ns/web/sa/frontend", "--method", "get", "--path", "/api/items"},
			"allow: allowed by shop/allow-frontend rule reads\n", 0},
		{"deny wins", []string{"--from", "spiffe://cluster.local/ns/web/sa/frontend", "--method", "GET", "--path", "/api/admin/users"},
			"deny: denied by shop/deny-admin rule admin\n", 3},
		{"default deny", []string{"--from", "spiffe://cluster.local/ns/web/sa/other", "--method", "GET", "--path", "/api/items"},
			"deny: no rule matched: default deny\n", 3},
		{"host with a port", []string{"--from", "spiffe://cluster.local/ns/web/sa/frontend", "--method", "GET", "--path", "/api/items", "--host", "Cart.Shop.svc:8080"},
			"allow: allowed by shop/allow-frontend rule reads\n", 0},
		{"audit namespace", []string{"--from", "spiffe://cluster.local/ns/web/sa/other", "--audit-namespace"},
			"allow: denied by shop/deny-admin rule admin (namespace in audit mode: allowed)\n", 0}, // TCP: the L7 deny rule fails closed
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := run(append(base, tc.args...)...)
			if out != tc.out || cli.ExitCode(err) != tc.code {
				t.Errorf("got %q exit %d (%v), want %q exit %d", out, cli.ExitCode(err), err, tc.out, tc.code)
			}
		})
	}
	if _, err := run("policy", "test", "-f", "testdata/policies.yaml", "--to", "spiffe://other.org/ns/shop/sa/cart", "--port", "80"); err == nil ||
		err.Error() != `--to spiffe://other.org/ns/shop/sa/cart is not in trust domain "cluster.local": the destination is a workload of this cluster (or set --trust-domain)` {
		t.Errorf("--to of another trust domain: %v", err)
	}
	if _, err := run("policy", "test", "--to", "spiffe://cluster.local/ns/shop/sa/cart", "--port", "80", "--audit-namespace"); err == nil ||
		!strings.HasPrefix(err.Error(), "--audit-namespace goes with -f") {
		t.Errorf("--audit-namespace without -f: %v", err)
	}
	if _, err := run("policy", "test", "-f", "testdata/policies.yaml", "--to", "spiffe://cluster.local/cart", "--port", "80"); err == nil ||
		err.Error() != "--to spiffe://cluster.local/cart is not of the form spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>" {
		t.Errorf("bad --to: %v", err)
	}
}

// A policy file is read through a limit: /dev/zero, which has no size and
// no end, is refused after 4 MiB, in bounded memory, by both commands.
func TestPolicyFilesAreBounded(t *testing.T) {
	const perFile = "policy file /dev/zero is over the limit of 4 MiB per file (an AccessPolicy is a few KB): " +
		"check that it is the file you meant, or split it into files of 4 MiB at most"
	if _, err := run("policy", "lint", "/dev/zero"); err == nil || err.Error() != perFile {
		t.Errorf("lint /dev/zero: %v\nwant %s", err, perFile)
	}
	if _, err := run("policy", "test", "-f", "/dev/zero", "--to", "spiffe://cluster.local/ns/shop/sa/cart", "--port", "80"); err == nil || err.Error() != perFile {
		t.Errorf("test -f /dev/zero: %v\nwant %s", err, perFile)
	}

	// Five files of just under 4 MiB (sparse: nothing is written) are
	// over the 16 MiB of one run, at the fifth.
	big := filepath.Join(t.TempDir(), "big.yaml")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(4<<20 - 1); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	total := "policy file " + big + " takes the policy files over the limit of 16 MiB for one run: give fewer files at a time"
	if _, err := run("policy", "lint", big, big, big, big, big); err == nil || err.Error() != total {
		t.Errorf("lint of 5 files of 4 MiB: %v\nwant %s", err, total)
	}
	// Four are within the limits, and then parsed (the parser bounds a
	// document to 1 MiB).
	if _, err := run("policy", "lint", big, big, big, big); err == nil || err.Error() != big+": policy: document 1 is 4194304 bytes; at most 1048576" {
		t.Errorf("lint of 4 files of 4 MiB: %v", err)
	}
	help, err := run("policy", "lint", "--help")
	if err != nil || !strings.Contains(help, "A policy file may hold at most 4 MiB, and the files of one run 16 MiB together.") {
		t.Errorf("lint --help does not say the limits: %v\n%s", err, help)
	}
}
