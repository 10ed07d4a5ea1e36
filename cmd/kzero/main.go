// Command kzero is zero trust for Kubernetes in one binary; see
// `kzero --help` and docs/cli.md.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"kzero.dev/kzero/internal/cli"
)

func main() {
	os.Exit(run())
}

func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := cli.New(os.Stdout, os.Stderr).ExecuteContext(ctx); err != nil {
		if !cli.Quiet(err) {
			fmt.Fprintln(os.Stderr, "error:", err)
		}
		return cli.ExitCode(err)
	}
	return 0
}
