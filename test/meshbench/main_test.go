package meshbench

import (
	"flag"
	"fmt"
	"os"
	"testing"
	"time"
)

// The benchmarks' settings: the defaults are issue 15's.
var (
	rate     = flag.Int("meshbench.rate", 1000, "requests a second of the latency benchmarks")
	window   = flag.Duration("meshbench.window", 5*time.Second, "how long the latency benchmarks measure, after -meshbench.warmup")
	warmup   = flag.Duration("meshbench.warmup", time.Second, "load sent, unmeasured, before each latency window")
	bulkTime = flag.Duration("meshbench.bulk", 3*time.Second, "how long the bulk stream sends")
	pprofDir = flag.String("meshbench.pprof", "", "write a CPU profile of each mesh pod, over each measured window, to this folder")
	syscalls = flag.Bool("meshbench.syscalls", false, "count each proxy's system calls with perf stat (Debian's linux-perf) over each window; it adds a little to every system call")
)

func TestMain(m *testing.M) {
	// A child that runs one mesh pod is this same binary, started again
	// with the pod's spec in its environment.
	if spec, ok := os.LookupEnv(podEnv); ok {
		if err := runPod([]byte(spec)); err != nil {
			fmt.Fprintln(os.Stderr, "meshbench pod:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}
