package audit_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"kzero.dev/kzero/internal/audit"
)

// The seed corpus of every fuzz target lives in testdata/fuzz/<target>/ and
// runs with every `go test`. `go test -run TestWriteFuzzSeeds -write-seeds`
// writes it again.
var writeSeeds = flag.Bool("write-seeds", false, "write the fuzz seed corpus to testdata/fuzz")

// FuzzVerify: any bytes as a log, a chained file or a stream, never panic;
// a failure is a *RecordError, ErrEmpty or a read error; a log that
// verifies reports counts that add up.
func FuzzVerify(f *testing.F) {
	f.Fuzz(func(t *testing.T, log []byte) {
		for _, stream := range []bool{false, true} {
			rep, err := audit.Verify(bytes.NewReader(log), audit.Options{Continues: true, Stream: stream, AllowUnsigned: true})
			if err != nil {
				var re *audit.RecordError
				if !errors.As(err, &re) && !errors.Is(err, audit.ErrEmpty) {
					t.Fatalf("stream %t: error is a %T: %v", stream, err, err)
				}
				if re != nil && (re.Line < 1 || re.Detail == "") {
					t.Fatalf("stream %t: record error without a line or detail: %+v", stream, re)
				}
				continue
			}
			n, records := 0, 0
			for _, c := range rep.Chains {
				if c.Last.Seq-c.First.Seq != uint64(c.Records+c.Checkpoints) || c.UnsignedTail > c.Records || c.FirstLine > c.LastLine {
					t.Fatalf("stream %t: chain does not add up: %+v", stream, c)
				}
				n += c.Records + c.Checkpoints
				records += c.Records
			}
			if n != rep.Records+rep.Checkpoints || records != rep.Records || (!stream && (len(rep.Chains) != 1 || rep.Skipped != 0)) {
				t.Fatalf("stream %t: report does not add up: %+v", stream, rep)
			}
		}
	})
}

// FuzzTamper: changing any one byte of a real signed log to any other
// value is detected, and the error names the line of that byte.
func FuzzTamper(f *testing.F) {
	log := writeLog(f, nil, 6, 3).file.Bytes()
	f.Fuzz(func(t *testing.T, pos uint, b byte) {
		i := int(pos % uint(len(log)))
		if log[i] == b {
			return
		}
		tampered := bytes.Clone(log)
		tampered[i] = b
		_, err := audit.Verify(bytes.NewReader(tampered), audit.Options{})
		var re *audit.RecordError
		if !errors.As(err, &re) {
			t.Fatalf("byte %d changed to %q: error %v, want a *RecordError", i, b, err)
		}
		line := bytes.Count(log[:i], []byte("\n")) + 1
		if re.Line != line {
			t.Fatalf("byte %d (line %d) changed to %q: error names line %d: %v", i, line, b, re.Line, err)
		}
	})
}

// FuzzTamperStream: changing any one byte of a real signed stream,
// interleaved with the component's other lines, is found, or leaves its
// records as they were (a byte of another line), or shows in the report
// (the last checkpoint no longer a record: an unsigned tail).
func FuzzTamperStream(f *testing.F) {
	c := newTestCA(f)
	var w bytes.Buffer
	writeStream(f, &w, c.svid(f, agentID), &clock{now: t0}, 6, 3, true)
	stream := w.Bytes()
	opts := audit.Options{Stream: true, Bundle: c.bundle(), Signers: []spiffeid.ID{agentID}}
	orig, err := audit.Verify(bytes.NewReader(stream), opts)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, pos uint, b byte) {
		i := int(pos % uint(len(stream)))
		if stream[i] == b {
			return
		}
		tampered := bytes.Clone(stream)
		tampered[i] = b
		rep, err := audit.Verify(bytes.NewReader(tampered), opts)
		if err != nil {
			return
		}
		start := bytes.LastIndexByte(stream[:i], '\n') + 1
		inRecord := bytes.HasPrefix(stream[start:], []byte(`{"schema":"kzero.dev/audit/`))
		if inRecord && rep.Last == orig.Last && rep.Checkpoints == orig.Checkpoints && rep.Records == orig.Records {
			t.Fatalf("byte %d of a record changed to %q: verifies as before: %+v", i, b, rep)
		}
		if !inRecord && (rep.Last != orig.Last || rep.Records != orig.Records) {
			t.Fatalf("byte %d of another line changed to %q: records changed: %+v", i, b, rep)
		}
	})
}

// TestWriteFuzzSeeds writes the seed corpus when asked with -write-seeds.
func TestWriteFuzzSeeds(t *testing.T) {
	if !*writeSeeds {
		t.Skip("run with -write-seeds to write testdata/fuzz")
	}
	fx := writeLog(t, nil, 4, 2)
	good := fx.file.Bytes()
	ls := lines(good)
	var stream, twoRuns bytes.Buffer
	clk := &clock{now: t0}
	writeStream(t, &stream, fx.svid, clk, 4, 2, true)
	twoRuns.Write(stream.Bytes())
	writeStream(t, &twoRuns, fx.svid, clk, 2, 100, false)
	write(t, "FuzzVerify", map[string]any{
		"valid":        good,
		"empty":        []byte{},
		"one-record":   join(ls[:1]),
		"swapped":      join([][]byte{ls[1], ls[0]}),
		"torn":         good[:len(good)-7],
		"not-json":     []byte("hello\n"),
		"stdout-event": fx.stdout.Bytes(),
		"blank-lines":  []byte("\n\n"),
		"no-hash":      []byte(`{"schema":"kzero.dev/audit/v1","seq":1,"prev":"` + strings.Repeat("0", 64) + `"}` + "\n"),
		"stream":       stream.Bytes(),
		"two-runs":     twoRuns.Bytes(),
		"timestamps":   []byte("2026-07-01T12:00:00.123Z " + string(ls[0]) + "\n"),
	})
	write(t, "FuzzTamper", map[string]any{
		"first-byte":   [2]any{uint(0), byte('x')},
		"newline":      [2]any{uint(bytes.IndexByte(good, '\n')), byte('x')},
		"into-newline": [2]any{uint(40), byte('\n')},
		"far":          [2]any{uint(1 << 20), byte('0')},
	})
	var ts bytes.Buffer // as FuzzTamperStream writes it
	writeStream(t, &ts, fx.svid, &clock{now: t0}, 6, 3, true)
	rl := recordLines(ts.Bytes())
	lineStart := func(n int) uint { return uint(len(join(lines(ts.Bytes())[:n-1]))) }
	write(t, "FuzzTamperStream", map[string]any{
		"record-first-byte":     [2]any{lineStart(rl[1]), byte(' ')},
		"last-checkpoint-start": [2]any{lineStart(rl[len(rl)-1]), byte('x')},
		"log-line":              [2]any{uint(3), byte('x')},
		"newline-in-record":     [2]any{lineStart(rl[2]) + 30, byte('\n')},
	})
}

func write(t *testing.T, target string, seeds map[string]any) {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, v := range seeds {
		var body string
		switch v := v.(type) {
		case []byte:
			body = fmt.Sprintf("[]byte(%q)\n", v)
		case [2]any:
			body = fmt.Sprintf("uint(%d)\nbyte(%q)\n", v[0], v[1])
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte("go test fuzz v1\n"+body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
