package agent_test

import (
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	spiffewl "github.com/spiffe/go-spiffe/v2/workloadapi"

	"kzero.dev/kzero/internal/audit"
	"kzero.dev/kzero/internal/workloadapi"
)

// BenchmarkFetchJWTSVIDThroughTheAuthority is go-spiffe's FetchJWTSVID,
// for the same audience every time, through the whole path: the Workload
// API, the agent's client, the authority's agent API (TLS 1.3, the agent's
// SVID, the pod authorized, the CA's signature, the issuance audited),
// all in this process. It reports the CPU time the process spends per
// 1,000 calls, and how many JWT-SVIDs the authority signs for them:
//
//	go test -run '^$' -bench FetchJWTSVIDThroughTheAuthority -benchtime 1000x ./internal/agent/
func BenchmarkFetchJWTSVIDThroughTheAuthority(b *testing.B) {
	a := startAuthority(b)
	bundles := &workloadapi.Bundles{}
	w := serveWorkloadAPI(b, a.attestedClient(b, bundles), bundles, nil)
	c, err := spiffewl.New(b.Context(), spiffewl.WithAddr(w.addr))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	params := jwtsvid.Params{Audience: "spiffe://cluster.local/ns/shop/sa/db"}
	signed, cpu := a.events.issued(audit.SVIDTypeJWT), cpuTime(b)
	for b.Loop() {
		if _, err := c.FetchJWTSVID(b.Context(), params); err != nil {
			b.Fatal(err)
		}
	}
	cpu = cpuTime(b) - cpu
	signed = a.events.issued(audit.SVIDTypeJWT) - signed
	b.ReportMetric(float64(cpu.Milliseconds())*1000/float64(b.N), "cpu-ms/1000calls")
	b.ReportMetric(float64(signed)*1000/float64(b.N), "signed/1000calls")
}

// cpuTime is the user and system CPU time of the process so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
