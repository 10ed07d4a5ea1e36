package workloadapi

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/metrics"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	spiffewl "github.com/spiffe/go-spiffe/v2/workloadapi"
)

// streamClientsEnv makes the test binary, run again with
// -test.run=^TestStreamClients$, a client process that holds that many
// FetchX509SVID streams open on the socket in streamSocketEnv.
const (
	streamClientsEnv = "KZERO_TEST_STREAM_CLIENTS"
	streamSocketEnv  = "KZERO_TEST_STREAM_SOCKET"
)

// TestStreamClients is not a test of its own: BenchmarkServerMemory runs
// it in a child process, so that the clients' memory is not counted as the
// server's. It opens the streams, each on a connection of its own as pods
// do, prints "ready" when each has its first SVID and holds them until its
// stdin closes.
func TestStreamClients(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv(streamClientsEnv))
	if n == 0 {
		t.Skip("run by BenchmarkServerMemory")
	}
	got := make(chan error, n)
	for range n {
		c, err := spiffewl.New(t.Context(), spiffewl.WithAddr(os.Getenv(streamSocketEnv)))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		first := make(chan error, 1)
		go func() {
			_ = c.WatchX509Context(t.Context(), firstWatcher{first})
		}()
		go func() { got <- <-first }()
	}
	for range n {
		if err := <-got; err != nil {
			t.Fatal(err)
		}
	}
	fmt.Println("ready")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
}

// firstWatcher reports the first update or error of a stream on first, once.
type firstWatcher struct{ first chan error }

func (w firstWatcher) OnX509ContextUpdate(*spiffewl.X509Context) {
	select {
	case w.first <- nil:
	default:
	}
}

func (w firstWatcher) OnX509ContextWatchError(err error) {
	select {
	case w.first <- err:
	default:
	}
}

// BenchmarkServerMemory is the memory the server takes for 100 callers,
// each of its own service account, each holding a FetchX509SVID stream
// open on a connection of its own (100 pods' worth): the heap in use and
// the goroutine stacks, after a GC, beyond what the idle server took. The
// clients run in a child process.
func BenchmarkServerMemory(b *testing.B) {
	const callers = 100
	var calls atomic.Int64
	e := start(b, func(c *Config) {
		// One process stands for the 100 pods.
		c.MaxConnsPerProcess, c.MaxStreamsPerProcess = callers, callers
		c.Attestor = AttestorFunc(func(context.Context, Caller) (spiffeid.ID, error) {
			return spiffeid.RequireFromPath(td, fmt.Sprintf("/ns/app/sa/sa-%03d", calls.Add(1)%callers)), nil
		})
	})
	for b.Loop() {
		b.StopTimer()
		heap0, stacks0 := inUse()
		cmd := exec.CommandContext(b.Context(), os.Args[0], "-test.run=^TestStreamClients$")
		cmd.Env = append(os.Environ(), streamClientsEnv+"="+strconv.Itoa(callers), streamSocketEnv+"="+e.addr())
		stdin, err := cmd.StdinPipe()
		if err != nil {
			b.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err != nil || line != "ready\n" {
			b.Fatalf("the client process said %q: %v", line, err)
		}
		heap, stacks := inUse()
		b.ReportMetric((float64(heap)-float64(heap0))/(1<<20), "heap-MiB")
		b.ReportMetric((float64(stacks)-float64(stacks0))/(1<<20), "stacks-MiB")
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// inUse is the heap's live objects and the goroutine stacks, after a GC.
func inUse() (heap, stacks uint64) {
	runtime.GC()
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/stacks:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64(), s[1].Value.Uint64()
}
