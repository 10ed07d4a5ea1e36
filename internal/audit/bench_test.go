package audit_test

import (
	"bytes"
	"io"
	"testing"

	"kzero.dev/kzero/internal/audit"
)

// BenchmarkRecord is the hot path of every decision, as a component with
// an SVID records it: stamp, validate and encode an access event, chain it
// (SHA-256) and write it to the stream, with a signed checkpoint every
// 1000 records (its ECDSA signature amortized).
func BenchmarkRecord(b *testing.B) {
	stream := benchChain(b, newTestCA(b))
	rec, err := audit.NewRecorder(audit.Config{Component: audit.ComponentAgent, Chains: []*audit.Chain{stream}})
	if err != nil {
		b.Fatal(err)
	}
	benchRecord(b, rec)
}

// BenchmarkRecordPlain is the same event written plain, unchained: a
// component with no SVID, and the stream before it carried the chain.
func BenchmarkRecordPlain(b *testing.B) {
	rec, err := audit.NewRecorder(audit.Config{Component: audit.ComponentAgent, Out: io.Discard})
	if err != nil {
		b.Fatal(err)
	}
	benchRecord(b, rec)
}

// BenchmarkRecordStreamAndFile chains the event twice: to the stream and
// to a chained file.
func BenchmarkRecordStreamAndFile(b *testing.B) {
	c := newTestCA(b)
	rec, err := audit.NewRecorder(audit.Config{Component: audit.ComponentAgent, Chains: []*audit.Chain{benchChain(b, c), benchChain(b, c)}})
	if err != nil {
		b.Fatal(err)
	}
	benchRecord(b, rec)
}

// benchChain is a chain to io.Discard with the default checkpoints.
func benchChain(b *testing.B, c *testCA) *audit.Chain {
	chain, err := audit.NewChain(io.Discard, audit.ChainConfig{Component: audit.ComponentAgent, SVIDs: source{svid: c.svid(b, agentID)}})
	if err != nil {
		b.Fatal(err)
	}
	return chain
}

// benchRecord records one access event per iteration.
func benchRecord(b *testing.B, rec *audit.Recorder) {
	e := accessEvent(1)
	b.ReportAllocs()
	for b.Loop() {
		if err := rec.Record(e); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerify reads a log of 1000 events and one checkpoint.
func BenchmarkVerify(b *testing.B) {
	f := writeLog(b, nil, 1000, 1000)
	log := f.file.Bytes()
	b.SetBytes(int64(len(log)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := audit.Verify(bytes.NewReader(log), audit.Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyStream reads a stream of 1000 events and their
// checkpoint, with the component's log lines between them.
func BenchmarkVerifyStream(b *testing.B) {
	c := newTestCA(b)
	var w bytes.Buffer
	writeStream(b, &w, c.svid(b, agentID), &clock{now: t0}, 1000, 1000, true)
	log := w.Bytes()
	b.SetBytes(int64(len(log)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := audit.Verify(bytes.NewReader(log), audit.Options{Stream: true}); err != nil {
			b.Fatal(err)
		}
	}
}
