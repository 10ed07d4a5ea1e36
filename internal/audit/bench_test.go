package audit_test

import (
	"bytes"
	"io"
	"testing"

	"kzero.dev/kzero/internal/audit"
)

// BenchmarkRecord is the hot path of every decision: stamp, validate and
// encode an access event, write it to the stream, chain it (SHA-256) and
// write it to the file, with a signed checkpoint every 1000 records (its
// ECDSA signature amortized).
func BenchmarkRecord(b *testing.B) {
	c := newTestCA(b)
	chain, err := audit.NewChain(io.Discard, audit.ChainConfig{Component: audit.ComponentAgent, SVIDs: source{svid: c.svid(b, agentID)}})
	if err != nil {
		b.Fatal(err)
	}
	rec, err := audit.NewRecorder(audit.Config{Component: audit.ComponentAgent, Out: io.Discard, Chain: chain})
	if err != nil {
		b.Fatal(err)
	}
	benchRecord(b, rec)
}

// BenchmarkRecordStreamOnly is the same without the chained file.
func BenchmarkRecordStreamOnly(b *testing.B) {
	rec, err := audit.NewRecorder(audit.Config{Component: audit.ComponentAgent, Out: io.Discard})
	if err != nil {
		b.Fatal(err)
	}
	benchRecord(b, rec)
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
