//go:build e2e

package e2e

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"kzero.dev/kzero/internal/leader"
)

// TestLeaderTakeover: of two replicas one leads; when it dies without
// letting go of the Lease, the other leads within 15 s; a leader that stops
// cleanly hands over at once.
func TestLeaderTakeover(t *testing.T) {
	ns := namespace(t)
	var mu sync.Mutex
	leading := map[string]time.Time{}
	start := func(id string, keep bool) context.CancelFunc {
		ctx, cancel := context.WithCancel(t.Context())
		go func() {
			err := leader.Run(ctx, leader.Config{Client: kube.Client, Namespace: ns, Name: "kzero-authority", Identity: id, KeepOnCancel: keep},
				func(ctx context.Context) {
					mu.Lock()
					leading[id] = time.Now()
					mu.Unlock()
					<-ctx.Done()
				})
			if !errors.Is(err, context.Canceled) {
				t.Errorf("leader.Run for %s: %v", id, err) // a configuration error, not a lost election
			}
		}()
		return cancel
	}
	waitFor := func(id string, within time.Duration) time.Time {
		t.Helper()
		deadline := time.Now().Add(within)
		for time.Now().Before(deadline) {
			mu.Lock()
			at, ok := leading[id]
			mu.Unlock()
			if ok {
				return at
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("%s did not lead within %s", id, within)
		return time.Time{}
	}

	stopA := start("a", true) // a "crashes": it keeps the Lease
	waitFor("a", 30*time.Second)
	stopB := start("b", false)
	defer stopB()
	time.Sleep(time.Second)
	mu.Lock()
	_, bLeads := leading["b"]
	mu.Unlock()
	if bLeads {
		t.Fatal("b leads while a holds the Lease")
	}
	died := time.Now()
	stopA()
	took := waitFor("b", 15*time.Second).Sub(died)
	t.Logf("b took over %s after a died holding the Lease", took.Round(100*time.Millisecond))

	stopC := start("c", false)
	defer stopC()
	stopped := time.Now()
	stopB() // a clean stop releases the Lease
	// A released Lease is taken at the next retry (2 s), not after the
	// Lease expires (10 s or more): 5 s tells the two apart.
	took = waitFor("c", 5*time.Second).Sub(stopped)
	t.Logf("c took over %s after b stopped cleanly", took.Round(100*time.Millisecond))
}
