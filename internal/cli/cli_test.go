package cli_test

import (
	"bytes"
	"errors"
	"runtime"
	"strings"
	"testing"

	"kzero.dev/kzero/internal/cli"
)

func run(args ...string) (string, error) {
	var out bytes.Buffer
	root := cli.New(&out, &out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestVersion(t *testing.T) {
	out, err := run("version")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "kzero ") || !strings.Contains(out, "commit ") || !strings.Contains(out, runtime.Version()) {
		t.Errorf("version printed %q, want version, commit and Go version", out)
	}
}

// TestEveryDesignedCommandExists: each command of the design is present,
// documented, and either works or says it is not built and fails.
func TestEveryDesignedCommandExists(t *testing.T) {
	notBuilt := [][]string{
		{"gateway"}, {"scan"}, {"status"}, {"up"},
		{"policy", "advise"},
	}
	for _, args := range notBuilt {
		name := strings.Join(args, " ")
		t.Run(name, func(t *testing.T) {
			help, err := run(append(args, "--help")...)
			if err != nil {
				t.Fatalf("--help: %v", err)
			}
			if !strings.Contains(help, "Not built yet") {
				t.Errorf("help of %q does not say it is not built yet:\n%s", name, help)
			}
			_, err = run(append(args, "--some-flag", "x")...)
			if !errors.Is(err, cli.ErrNotBuilt) {
				t.Fatalf("running %q: error %v, want ErrNotBuilt", name, err)
			}
			want := "kzero " + name + " is not built yet: see docs/cli.md for what works today"
			if err.Error() != want {
				t.Errorf("error = %q, want %q", err, want)
			}
		})
	}
}

func TestUnknownCommandFails(t *testing.T) {
	if _, err := run("frobnicate"); err == nil || !strings.Contains(err.Error(), `unknown command "frobnicate"`) {
		t.Errorf("error = %v, want unknown command", err)
	}
}
