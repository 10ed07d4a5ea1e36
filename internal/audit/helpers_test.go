package audit_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"kzero.dev/kzero/internal/audit"
	"kzero.dev/kzero/internal/ca"
	"kzero.dev/kzero/internal/ca/catest"
)

var (
	td      = spiffeid.RequireTrustDomainFromString("cluster.local")
	agentID = spiffeid.RequireFromString("spiffe://cluster.local/ns/kzero-system/sa/agent")
	// t0 is the tests' clock: within the SVIDs' validity (they are issued
	// by a CA on the real clock).
	t0 = time.Now().UTC().Truncate(time.Second)
)

// testCA is a kzero CA on the real clock, and the bundle that verifies it.
type testCA struct {
	ca *ca.CA
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	c, err := ca.New(context.Background(), ca.Config{TrustDomain: td, Store: catest.NewMemStore(nil)})
	if err != nil {
		t.Fatalf("ca.New: %v", err)
	}
	return &testCA{ca: c}
}

func (c *testCA) bundle() *x509bundle.Bundle {
	return x509bundle.FromX509Authorities(td, c.ca.Bundle().X509Authorities())
}

// svid issues a real X.509-SVID for id, with a P-256 key made here.
func (c *testCA) svid(t testing.TB, id spiffeid.ID) *x509svid.SVID {
	t.Helper()
	key, csr := catest.NewCSR(t)
	s, err := c.ca.IssueX509SVID(ca.X509Request{ID: id, CSR: csr})
	if err != nil {
		t.Fatalf("IssueX509SVID: %v", err)
	}
	return &x509svid.SVID{ID: s.ID, Certificates: s.Certificates, PrivateKey: key}
}

// source is an x509svid.Source over a fixed SVID, or an error.
type source struct {
	svid *x509svid.SVID
	err  error
}

func (s source) GetX509SVID() (*x509svid.SVID, error) { return s.svid, s.err }

// clock ticks one millisecond at each reading.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(time.Millisecond)
	return c.now
}

// counter is a deterministic Rand: 0, 1, 2, ... byte after byte.
type counter struct {
	mu sync.Mutex
	n  byte
}

func (c *counter) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range p {
		p[i] = c.n
		c.n++
	}
	return len(p), nil
}

// accessEvent is the i-th event of a test log.
func accessEvent(i int) audit.Event {
	return audit.Event{
		Kind:    audit.KindAccess,
		Outcome: audit.OutcomeAllow,
		Reason:  "allowed by default/web rule frontend",
		Access: &audit.Access{
			Source: audit.Source{
				SPIFFEID: spiffeid.RequireFromString("spiffe://cluster.local/ns/default/sa/frontend"),
				Address:  netip.MustParseAddrPort(fmt.Sprintf("10.0.0.%d:4%04d", i%250+1, i%10000)),
			},
			Destination: audit.Destination{SPIFFEID: spiffeid.RequireFromString("spiffe://cluster.local/ns/default/sa/web"),
				Namespace: "default", ServiceAccount: "web", Workload: "web-7d4b9c-x2x9z", Port: 8080},
			Protocol: "http", Method: "GET", Path: fmt.Sprintf("/items/%d", i), Host: "web.default",
			Verdict: audit.VerdictAllow, Mode: audit.ModeEnforce, Enforced: true,
			Policy: &audit.PolicyRef{Namespace: "default", Name: "web", Rule: "frontend"},
		},
	}
}

// logFixture is a chained log written by a Recorder, with what wrote it.
type logFixture struct {
	ca     *testCA
	svid   *x509svid.SVID
	stdout bytes.Buffer
	file   bytes.Buffer
}

// writeLog records n access events with a checkpoint every `every`
// records, and closes the recorder (a last checkpoint).
func writeLog(t testing.TB, c *testCA, n, every int) *logFixture {
	t.Helper()
	if c == nil {
		c = newTestCA(t)
	}
	f := &logFixture{ca: c, svid: c.svid(t, agentID)}
	clk := &clock{now: t0}
	chain, err := audit.NewChain(&f.file, audit.ChainConfig{
		Component: audit.ComponentAgent, SVIDs: source{svid: f.svid}, Every: every, Interval: time.Hour, Now: clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := audit.NewRecorder(audit.Config{Component: audit.ComponentAgent, Out: &f.stdout, Chains: []*audit.Chain{chain}, Now: clk.Now, Rand: &counter{}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := rec.Record(accessEvent(i)); err != nil {
			t.Fatalf("Record %d: %v", i, err)
		}
	}
	if err := rec.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return f
}

// lines splits a log into its lines, without newlines.
func lines(b []byte) [][]byte {
	return bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
}

// join makes a log of lines.
func join(ls [][]byte) []byte {
	return append(bytes.Join(ls, []byte("\n")), '\n')
}

// writeStream writes n access events to w as a component with svid does
// to its standard output, chained, with a checkpoint every `every` records
// and, if closed, on Close; between them, as kubectl logs merges them,
// the lines the component writes to standard error: its slog JSON lines, a
// client-go text line, an empty line.
func writeStream(t testing.TB, w *bytes.Buffer, svid *x509svid.SVID, clk *clock, n, every int, closed bool) {
	t.Helper()
	chain, err := audit.NewChain(w, audit.ChainConfig{
		Component: audit.ComponentAgent, SVIDs: source{svid: svid}, Every: every, Interval: time.Hour, Now: clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := audit.NewRecorder(audit.Config{Component: audit.ComponentAgent, Chains: []*audit.Chain{chain}, Now: clk.Now, Rand: &counter{}})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			a.Value = slog.TimeValue(clk.Now())
		}
		return a
	}}))
	log.Info("starting", "component", "agent")
	for i := range n {
		log.Info("decided", "request", i)
		if i%3 == 1 {
			w.WriteString("W0701 12:00:00.000000       1 reflector.go:561] watch of *v1.Pod ended with: an error on the server\n\n")
		}
		if err := rec.Record(accessEvent(i)); err != nil {
			t.Fatalf("Record %d: %v", i, err)
		}
	}
	if !closed {
		return
	}
	log.Info("stopping")
	if err := rec.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// recordLines are the numbers (from 1) of the lines of a stream that are
// records.
func recordLines(stream []byte) []int {
	var n []int
	for i, l := range lines(stream) {
		if bytes.HasPrefix(l, []byte(`{"schema":"kzero.dev/audit/`)) {
			n = append(n, i+1)
		}
	}
	return n
}
