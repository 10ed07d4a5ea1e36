// Command kzero-agent is `kzero agent` alone: the node agent, which the
// DaemonSet of kzero install runs, linked without the authority and the
// rest of kzero's command line so that it takes little memory on every
// node. See `kzero-agent --help` and docs/agent.md.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"

	"github.com/spf13/cobra"

	"kzero.dev/kzero/internal/agentcmd"
	"kzero.dev/kzero/internal/version"
)

func main() {
	lean()
	os.Exit(run())
}

// lean sets the Go runtime for an agent that runs on every node with a
// heap of a few MiB: no heap profile sampling (no one reads the agent's
// profiles, and every sample's record is kept for ever), and a GC that
// lets the heap grow by half, not double, between collections (a
// collection of such a heap takes well under a millisecond of CPU). GOGC,
// when set, wins.
func lean() {
	runtime.MemProfileRate = 0
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(leanGCPercent)
	}
}

// leanGCPercent is the agent's GOGC unless the environment sets one.
const leanGCPercent = 50

func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := command().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		return 1
	}
	return 0
}

// command is `kzero agent` as kzero-agent: its own name, and --version.
func command() *cobra.Command {
	cmd := agentcmd.New()
	cmd.Use = "kzero-agent"
	// cobra prints "kzero-agent version <Version>". A version template
	// would link text/template, whose reflection keeps every exported
	// method of every type in the binary: megabytes (docs/agent.md, Memory).
	v := version.Get()
	cmd.Version = fmt.Sprintf("%s (commit %s, %s)", v.Version, v.Commit, v.GoVersion)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	return cmd
}
