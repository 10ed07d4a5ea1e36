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

	"kzero.dev/kzero/internal/audit"
)

// The seed corpus of every fuzz target lives in testdata/fuzz/<target>/ and
// runs with every `go test`. `go test -run TestWriteFuzzSeeds -write-seeds`
// writes it again.
var writeSeeds = flag.Bool("write-seeds", false, "write the fuzz seed corpus to testdata/fuzz")

// FuzzVerify: any bytes as a log never panic; a failure is a *RecordError,
// ErrEmpty or a read error; a log that verifies reports counts that add up.
func FuzzVerify(f *testing.F) {
	f.Fuzz(func(t *testing.T, log []byte) {
		rep, err := audit.Verify(bytes.NewReader(log), audit.Options{Continues: true})
		if err != nil {
			var re *audit.RecordError
			if !errors.As(err, &re) && !errors.Is(err, audit.ErrEmpty) {
				t.Fatalf("error is a %T: %v", err, err)
			}
			if re != nil && (re.Line < 1 || re.Detail == "") {
				t.Fatalf("record error without a line or detail: %+v", re)
			}
			return
		}
		if n := rep.Records + rep.Checkpoints; uint64(n) != rep.Last.Seq-rep.First.Seq || rep.UnsignedTail > rep.Records {
			t.Fatalf("report does not add up: %+v", rep)
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

// TestWriteFuzzSeeds writes the seed corpus when asked with -write-seeds.
func TestWriteFuzzSeeds(t *testing.T) {
	if !*writeSeeds {
		t.Skip("run with -write-seeds to write testdata/fuzz")
	}
	fx := writeLog(t, nil, 4, 2)
	good := fx.file.Bytes()
	ls := lines(good)
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
	})
	write(t, "FuzzTamper", map[string]any{
		"first-byte":   [2]any{uint(0), byte('x')},
		"newline":      [2]any{uint(bytes.IndexByte(good, '\n')), byte('x')},
		"into-newline": [2]any{uint(40), byte('\n')},
		"far":          [2]any{uint(1 << 20), byte('0')},
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
