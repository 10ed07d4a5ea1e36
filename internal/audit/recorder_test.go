package audit_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"kzero.dev/kzero/internal/audit"
)

// TestConcurrentRecords: events recorded from many goroutines reach the
// stream and the file whole, in the same order, and the file verifies.
func TestConcurrentRecords(t *testing.T) {
	c := newTestCA(t)
	var out, file bytes.Buffer
	chain, err := audit.NewChain(&file, audit.ChainConfig{Component: audit.ComponentAgent, SVIDs: source{svid: c.svid(t, agentID)}, Every: 7})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m, err := audit.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := audit.NewRecorder(audit.Config{Component: audit.ComponentAgent, Out: &out, Chains: []*audit.Chain{chain}, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	const workers, each = 8, 50
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				if err := rec.Record(accessEvent(w*each + i)); err != nil {
					t.Error(err)
				}
				m.ObserveDecision(audit.KindAccess, audit.VerdictAllow, 800*time.Nanosecond)
			}
		})
	}
	wg.Wait()
	if err := rec.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := audit.Verify(bytes.NewReader(file.Bytes()), audit.Options{Bundle: c.bundle()})
	if err != nil || rep.Records != workers*each || rep.UnsignedTail != 0 {
		t.Fatalf("%+v, %v", rep, err)
	}
	var events []string
	for _, l := range lines(file.Bytes()) {
		if !bytes.Contains(l, []byte(`"kind":"checkpoint"`)) {
			events = append(events, string(l[:bytes.Index(l, []byte(`,"seq":`))]))
		}
	}
	for i, l := range lines(out.Bytes()) {
		if string(l[:len(l)-1]) != events[i] {
			t.Fatalf("stream line %d is not file event %d:\n%s\n%s", i, i, l, events[i])
		}
	}
	if err := rec.Record(accessEvent(0)); !errors.Is(err, audit.ErrClosed) {
		t.Errorf("Record after Close: %v, want ErrClosed", err)
	}
	assertMetric(t, reg, "kzero_audit_events_total", workers*each)
	assertMetric(t, reg, "kzero_decision_duration_seconds", workers*each)
}

func assertMetric(t *testing.T, reg *prometheus.Registry, name string, want uint64) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		var got uint64
		for _, m := range mf.GetMetric() {
			if c := m.GetCounter(); c != nil {
				got += uint64(c.GetValue())
			}
			if h := m.GetHistogram(); h != nil {
				got += h.GetSampleCount()
			}
		}
		if got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
		return
	}
	t.Errorf("metric %s not registered", name)
}

// failingWriter fails every write after the first ok ones.
type failingWriter struct {
	ok  int
	buf bytes.Buffer
}

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.ok == 0 {
		return 0, errors.New("disk full")
	}
	w.ok--
	return w.buf.Write(p)
}

func TestWriteErrors(t *testing.T) {
	c := newTestCA(t)
	file := &failingWriter{ok: 2}
	chain, _ := audit.NewChain(file, audit.ChainConfig{Component: audit.ComponentAgent, SVIDs: source{svid: c.svid(t, agentID)}})
	out := &failingWriter{ok: 3}
	rec, _ := audit.NewRecorder(audit.Config{Component: audit.ComponentAgent, Out: out, Chains: []*audit.Chain{chain}, Rand: &counter{}})
	for i := range 2 {
		if err := rec.Record(accessEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	err := rec.Record(accessEvent(2))
	want := "audit: chain broken by an earlier write error: writing record 3: disk full"
	if !errors.Is(err, audit.ErrBroken) || err.Error() != want {
		t.Fatalf("error %v, want %s", err, want)
	}
	err = rec.Record(accessEvent(3))
	want = "audit: writing event 30313233343536373839" // prefix: then the chain's error
	if err == nil || !strings.HasPrefix(err.Error(), want) || !errors.Is(err, audit.ErrBroken) {
		t.Fatalf("error %v, want both writes' errors", err)
	}
}

func TestCheckpointErrors(t *testing.T) {
	c := newTestCA(t)
	svid := c.svid(t, agentID)
	src := &source{err: errors.New("workload API unavailable")}
	var file bytes.Buffer
	chain, _ := audit.NewChain(&file, audit.ChainConfig{Component: audit.ComponentAgent, SVIDs: srcFunc(func() *source { return src }), Every: 1})
	err := chain.Append([]byte(`{"kind":"access"}`))
	want := "audit: checkpoint failed after record 1: getting the SVID: workload API unavailable"
	if err == nil || err.Error() != want || !errors.Is(err, audit.ErrCheckpoint) {
		t.Fatalf("error %v, want %s", err, want)
	}
	src.err, src.svid = nil, svid
	if err := chain.Append([]byte(`{"kind":"access"}`)); err != nil {
		t.Fatal(err)
	}
	if h := chain.Head(); h.Seq != 3 {
		t.Errorf("head %v, want record 3 (two records and a checkpoint)", h)
	}
	// An expired SVID signs nothing.
	late, _ := audit.NewChain(&file, audit.ChainConfig{Component: audit.ComponentAgent, SVIDs: src, Every: 1,
		Now: func() time.Time { return svid.Certificates[0].NotAfter.Add(time.Second) }})
	err = late.Append([]byte(`{}`))
	if err == nil || !strings.Contains(err.Error(), "not now") || !errors.Is(err, audit.ErrCheckpoint) {
		t.Errorf("expired SVID: error %v", err)
	}
}

// srcFunc reads the current source at each call.
type srcFunc func() *source

func (f srcFunc) GetX509SVID() (*x509svid.SVID, error) { return f().GetX509SVID() }

func TestCheckpointInterval(t *testing.T) {
	c := newTestCA(t)
	now := t0
	var file bytes.Buffer
	chain, _ := audit.NewChain(&file, audit.ChainConfig{Component: audit.ComponentAgent, SVIDs: source{svid: c.svid(t, agentID)},
		Interval: time.Minute, Now: func() time.Time { return now }})
	for range 3 {
		_ = chain.Append([]byte(`{}`))
		now = now.Add(25 * time.Second)
	}
	// Records 1, 2, 3 (at 50 s) then 4 at 75 s, followed by a checkpoint.
	_ = chain.Append([]byte(`{}`))
	if h := chain.Head(); h.Seq != 5 {
		t.Errorf("head %v, want a checkpoint as record 5", h)
	}
	if err := chain.Checkpoint(); err != nil || chain.Head().Seq != 5 {
		t.Errorf("a checkpoint with nothing to sign wrote something: %v", err)
	}
}

// TestOpenFileResumes: a component restarted on its file continues the
// chain; a file that does not verify is refused.
func TestOpenFileResumes(t *testing.T) {
	c := newTestCA(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	svid := c.svid(t, agentID)
	for run := range 2 {
		f, head, err := audit.OpenFile(path, audit.Options{})
		if err != nil {
			t.Fatal(err)
		}
		chain, _ := audit.NewChain(f, audit.ChainConfig{Component: audit.ComponentAgent, SVIDs: source{svid: svid}, Start: head})
		rec, _ := audit.NewRecorder(audit.Config{Component: audit.ComponentAgent, Out: &bytes.Buffer{}, Chains: []*audit.Chain{chain}})
		for i := range 3 {
			if err := rec.Record(accessEvent(run*3 + i)); err != nil {
				t.Fatal(err)
			}
		}
		if err := errors.Join(rec.Close(), f.Close()); err != nil {
			t.Fatal(err)
		}
	}
	data, _ := os.ReadFile(path)
	rep, err := audit.Verify(bytes.NewReader(data), audit.Options{})
	if err != nil || rep.Records != 6 || rep.Checkpoints != 2 {
		t.Fatalf("%+v, %v", rep, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode())
	}
	data[10] ^= 1
	_ = os.WriteFile(path, data, 0o600)
	_, _, err = audit.OpenFile(path, audit.Options{})
	if err == nil || !strings.Contains(err.Error(), "does not verify, so nothing is appended to it; move it aside and start a new file: audit: record 1 (line 1)") {
		t.Errorf("tampered file: %v", err)
	}
}

func TestNewRecorderConfig(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  audit.Config
		want string
	}{
		{"no component", audit.Config{Out: &bytes.Buffer{}}, `audit: NewRecorder: component "" is not authority, agent, gateway or cli`},
		{"nowhere to write", audit.Config{Component: audit.ComponentAgent}, "audit: NewRecorder: Out or Chains is required (a Chain on os.Stdout in production)"},
		{"a nil chain", audit.Config{Component: audit.ComponentAgent, Chains: []*audit.Chain{nil}}, "audit: NewRecorder: a nil Chain"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := audit.NewRecorder(tt.cfg); err == nil || err.Error() != tt.want {
				t.Errorf("error %v, want %s", err, tt.want)
			}
		})
	}
}

// A refusal whose reason quotes what a caller sent (a hostPath, a
// certificate's name) that looks like a token or key material is recorded
// with it redacted, not dropped: a caller cannot keep its attempt out of
// the trail that way.
func TestRecordRedactsWhatACallerSent(t *testing.T) {
	var out bytes.Buffer
	rec, err := audit.NewRecorder(audit.Config{Component: audit.ComponentAuthority, Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	e := audit.Event{Kind: audit.KindAdmission, Outcome: audit.OutcomeDeny,
		Reason:    `pod admission webhook refused the pod: pod shop/x mounts the node's filesystem (hostPath /eyJhbGciOi.eyJzdWIiOi as volume "a", /-----BEGIN as volume "b")`,
		Admission: &audit.Admission{UID: "u", Resource: "v1/pods", Operation: "CREATE", Unauthenticated: true, Caller: ""}}
	if err := rec.Record(e); err != nil {
		t.Fatalf("Record: %v", err)
	}
	want := `pod admission webhook refused the pod: pod shop/x mounts the node's filesystem (hostPath /[redacted] as volume \"a\", /[redacted] as volume \"b\")`
	if !strings.Contains(out.String(), `"reason":"`+want+`"`) {
		t.Errorf("recorded %s\nwant the reason %s", out.String(), want)
	}
	e = audit.Event{Kind: audit.KindAdmission, Outcome: audit.OutcomeDeny, Reason: "refused: unread",
		Admission: &audit.Admission{UID: "u", Resource: "v1/pods", Operation: "CREATE", Caller: "eyJhbGciOi.eyJzdWIiOi"}}
	out.Reset()
	if err := rec.Record(e); err != nil || !strings.Contains(out.String(), `"caller":"[redacted]"`) {
		t.Errorf("Record: %v, %s; want the caller redacted", err, out.String())
	}
}
