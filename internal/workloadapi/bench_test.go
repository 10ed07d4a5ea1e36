package workloadapi

import (
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	spiffewl "github.com/spiffe/go-spiffe/v2/workloadapi"
)

// BenchmarkFetchX509SVID is the latency of FetchX509SVID with a warm
// cache: go-spiffe's client, on one connection to the unix socket, opens
// the stream, waits for the first message and parses it (the SVID, its key
// and the bundle), as a workload's first call does. The server attests the
// caller every time, with an attestor that costs nothing.
func BenchmarkFetchX509SVID(b *testing.B) {
	e := start(b, nil)
	c := e.client(b)
	benchFetch(b, e, func() (*spiffewl.Client, func()) { return c, func() {} })
}

// BenchmarkFetchX509SVIDNewConnection is BenchmarkFetchX509SVID with a new
// connection for every call: a process that asks once and exits.
func BenchmarkFetchX509SVIDNewConnection(b *testing.B) {
	e := start(b, nil)
	benchFetch(b, e, func() (*spiffewl.Client, func()) {
		c, err := spiffewl.New(b.Context(), spiffewl.WithAddr(e.addr()))
		if err != nil {
			b.Fatal(err)
		}
		return c, func() { c.Close() }
	})
}

// benchFetch measures FetchX509SVID on the clients client gives, each
// closed by the function given with it.
func benchFetch(b *testing.B, e *env, client func() (*spiffewl.Client, func())) {
	c, done := client()
	if _, err := c.FetchX509SVID(b.Context()); err != nil {
		b.Fatal(err)
	}
	done()
	var lat []time.Duration
	for b.Loop() {
		c, done := client()
		start := time.Now()
		svid, err := c.FetchX509SVID(b.Context())
		lat = append(lat, time.Since(start))
		done()
		if err != nil || svid.ID != webID {
			b.Fatal(svid, err)
		}
	}
	b.StopTimer()
	b.ReportMetric(percentile(lat, 0.5), "p50-ms")
	b.ReportMetric(percentile(lat, 0.99), "p99-ms")
	b.ReportMetric(percentile(lat, 1), "max-ms")
	if n := e.signer.x509.Load(); n != 1 {
		b.Fatalf("%d signatures, want 1: the cache was not warm", n)
	}
}

// percentile is the p-th of ds, in milliseconds; it sorts ds.
func percentile(ds []time.Duration, p float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return float64(ds[int(p*float64(len(ds)-1))].Microseconds()) / 1000
}

// BenchmarkCache100Identities is the heap that the X.509-SVIDs of 100
// service accounts take in the cache, keys and chains included.
func BenchmarkCache100Identities(b *testing.B) {
	const ids = 100
	var grown uint64
	for b.Loop() {
		b.StopTimer()
		c, _, _ := newTestCache(b)
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		b.StartTimer()
		for i := range ids {
			id := spiffeid.RequireFromPath(td, fmt.Sprintf("/ns/app/sa/sa-%03d", i))
			if _, _, err := c.get(b.Context(), id); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&after)
		grown = after.HeapAlloc - before.HeapAlloc
		runtime.KeepAlive(c)
		b.StartTimer()
	}
	b.ReportMetric(float64(grown)/1024, "heap-KB/100ids")
}
