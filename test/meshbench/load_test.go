package meshbench

import (
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openLoop sends requests, rate a second for d, each on a goroutine of
// its own when its time comes: an open loop, where a slow answer delays
// no other request. It returns the latency of those that succeeded, from
// the moment each was sent to the end of its answer, sorted, and the
// errors of the others.
//
// The times are kept by an OS thread of its own that sleeps in
// nanosleep(2), which wakes within about 100 µs where the runtime's
// timers are late by half a millisecond; latency is measured from the
// moment a request really leaves, so the pacer's lateness is not counted.
func openLoop(rate int, d time.Duration, do func() error) ([]time.Duration, []error) {
	n := int(d.Seconds() * float64(rate))
	interval := time.Second / time.Duration(rate)
	lat := make([]time.Duration, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	paced := make(chan struct{})
	go func() {
		defer close(paced)
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		start := time.Now()
		for i := range n {
			if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
				ts := unix.NsecToTimespec(wait.Nanoseconds())
				for unix.Nanosleep(&ts, &ts) == unix.EINTR {
				}
			}
			wg.Go(func() {
				sent := time.Now()
				errs[i] = do()
				lat[i] = time.Since(sent)
			})
		}
	}()
	<-paced
	wg.Wait()
	var ok []time.Duration
	var failed []error
	for i := range n {
		if errs[i] != nil {
			failed = append(failed, errs[i])
			continue
		}
		ok = append(ok, lat[i])
	}
	slices.Sort(ok)
	return ok, failed
}

// percentile is the nearest-rank q-quantile (0 < q <= 1) of sorted: the
// smallest value that at least q of them do not exceed. Zero when sorted
// is empty.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(q*float64(len(sorted)) + 0.999999)
	return sorted[min(max(rank, 1), len(sorted))-1]
}

func TestPercentile(t *testing.T) {
	ms := func(xs ...int) []time.Duration {
		var d []time.Duration
		for _, x := range xs {
			d = append(d, time.Duration(x)*time.Millisecond)
		}
		return d
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	for _, tc := range []struct {
		name   string
		sorted []time.Duration
		q      float64
		want   time.Duration
	}{
		{"none", nil, 0.5, 0},
		{"one", ms(7), 0.99, 7 * time.Millisecond},
		{"median of four is the second", ms(1, 2, 3, 4), 0.5, 2 * time.Millisecond},
		{"p50 of 1..100", ms(hundred...), 0.5, 50 * time.Millisecond},
		{"p99 of 1..100", ms(hundred...), 0.99, 99 * time.Millisecond},
		{"p100 is the largest", ms(hundred...), 1, 100 * time.Millisecond},
		{"p99 of 1..10 is the largest", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 0.99, 10 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := percentile(tc.sorted, tc.q); got != tc.want {
				t.Errorf("percentile(%v, %v) = %v, want %v", tc.sorted, tc.q, got, tc.want)
			}
		})
	}
}

func TestOpenLoopKeepsItsRate(t *testing.T) {
	var mu sync.Mutex
	var sent []time.Time
	start := time.Now()
	lat, errs := openLoop(1000, 200*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		sent = append(sent, time.Now())
		return nil
	})
	if len(lat) != 200 || len(errs) != 0 {
		t.Fatalf("%d answered and %d failed, want 200 and 0", len(lat), len(errs))
	}
	// The last leaves at 199 ms; a loop that ran as fast as it could
	// would be done in a few.
	if last := sent[len(sent)-1].Sub(start); last < 190*time.Millisecond || last > 400*time.Millisecond {
		t.Errorf("the last request left %v after the start, want about 199 ms", last)
	}
}

// usage is what a side's processes used over a window.
type usage struct {
	cpu      time.Duration
	pss      int64 // bytes: the highest of the samples
	syscalls int64 // -1: not counted
}

// meter measures a side's processes over a window: CPU time from
// /proc/<pid>/stat, memory sampled every 100 ms from smaps_rollup.
type meter struct {
	pids   []int
	cpu0   time.Duration
	stopc  chan struct{}
	done   chan struct{}
	maxPSS int64
	perf   *perfStat
}

func startMeter(pids []int, countSyscalls bool) (*meter, error) {
	m := &meter{pids: pids, stopc: make(chan struct{}), done: make(chan struct{})}
	var err error
	if m.cpu0, err = cpuTime(pids); err != nil {
		return nil, err
	}
	if countSyscalls {
		if m.perf, err = startPerf(pids); err != nil {
			return nil, err
		}
	}
	go func() {
		defer close(m.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			if p, err := pss(m.pids); err == nil {
				m.maxPSS = max(m.maxPSS, p)
			}
			select {
			case <-tick.C:
			case <-m.stopc:
				return
			}
		}
	}()
	return m, nil
}

func (m *meter) stop() (usage, error) {
	close(m.stopc)
	<-m.done
	u := usage{pss: m.maxPSS, syscalls: -1}
	cpu, err := cpuTime(m.pids)
	if err != nil {
		return u, err
	}
	u.cpu = cpu - m.cpu0
	if m.perf != nil {
		if u.syscalls, err = m.perf.stop(); err != nil {
			return u, fmt.Errorf("perf stat: %w", err)
		}
	}
	return u, nil
}
