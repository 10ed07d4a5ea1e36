package audit_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"kzero.dev/kzero/internal/audit"
)

// testStream is a component's output as kubectl logs shows it: the chain
// of the test log (10 events, a checkpoint every 4 records and on Close:
// records 1 to 13) with the component's other lines between them.
func testStream(t testing.TB, c *testCA) (stream []byte, rl []int) {
	t.Helper()
	if c == nil {
		c = newTestCA(t)
	}
	var w bytes.Buffer
	writeStream(t, &w, c.svid(t, agentID), &clock{now: t0}, nEvents, every, true)
	return w.Bytes(), recordLines(w.Bytes())
}

// streamOpts verifies a stream written with the agent's SVID by c.
func streamOpts(c *testCA) audit.Options {
	return audit.Options{Stream: true, Bundle: c.bundle(), TrustDomain: td, Signers: []spiffeid.ID{agentID}}
}

func TestStreamVerifies(t *testing.T) {
	c := newTestCA(t)
	stream, rl := testStream(t, c)
	if len(rl) != nLines {
		t.Fatalf("%d records in the stream, want %d", len(rl), nLines)
	}
	other := len(lines(stream)) - nLines
	rep, err := audit.Verify(bytes.NewReader(stream), streamOpts(c))
	if err != nil {
		t.Fatal(err)
	}
	want := audit.ChainReport{Last: rep.Last, FirstLine: rl[0], LastLine: rl[nLines-1], Records: nEvents, Checkpoints: 3}
	if rep.Records != nEvents || rep.Checkpoints != 3 || rep.Skipped != other || rep.UnsignedTail != 0 || rep.Last.Seq != nLines ||
		!rep.BundleChecked || !slices.Equal(rep.Signers, []spiffeid.ID{agentID}) || len(rep.Chains) != 1 || rep.Chains[0] != want {
		t.Errorf("report %+v", rep)
	}

	t.Run("with kubectl logs --timestamps", func(t *testing.T) {
		var ts []byte
		for _, l := range lines(stream) {
			ts = append(append(append(ts, "2026-07-01T12:00:00.12345678Z "...), l...), '\n')
		}
		got, err := audit.Verify(bytes.NewReader(ts), streamOpts(c))
		if err != nil || got.Records != rep.Records || got.Skipped != rep.Skipped || got.Last != rep.Last {
			t.Errorf("report %+v, %v; want %+v", got, err, rep)
		}
	})

	t.Run("as a file", func(t *testing.T) {
		_, err := audit.Verify(bytes.NewReader(stream), audit.Options{})
		want := `audit: record 1 (line 1): does not start as a record does ({"schema":"kzero.dev/audit/...): the file is damaged or is not a chained audit file; a log stream with other lines in it, such as kubectl logs output, verifies with --stream`
		if err == nil || err.Error() != want || !errors.Is(err, audit.ErrMalformed) {
			t.Errorf("error %v, want %s", err, want)
		}
	})

	t.Run("readers decode every record as an event", func(t *testing.T) {
		kinds := map[audit.Kind]int{}
		for _, n := range rl {
			var e audit.Event
			if err := json.Unmarshal(lines(stream)[n-1], &e); err != nil {
				t.Fatalf("line %d: %v", n, err)
			}
			kinds[e.Kind]++
			if e.Kind == audit.KindAccess && (e.Access == nil || e.Access.Destination.Port != 8080 || e.Schema != audit.Schema) {
				t.Errorf("line %d decodes as %+v", n, e)
			}
		}
		if kinds[audit.KindAccess] != nEvents || kinds[audit.KindCheckpoint] != 3 {
			t.Errorf("kinds %v", kinds)
		}
	})

	t.Run("nothing but other lines", func(t *testing.T) {
		_, err := audit.Verify(strings.NewReader("starting\n\n{\"level\":\"INFO\"}\n"), streamOpts(c))
		want := "audit: empty log: none of its 3 lines is a kzero audit record"
		if err == nil || err.Error() != want || !errors.Is(err, audit.ErrEmpty) {
			t.Errorf("error %v, want %s", err, want)
		}
	})
}

// TestStreamTampered: a record removed, reordered, edited, made to look
// like another component's line, or cut, in a stream interleaved with the
// component's logs, is found, and the error names the line.
func TestStreamTampered(t *testing.T) {
	c := newTestCA(t)
	stream, rl := testStream(t, c)
	ls := lines(stream)
	// at is the line of record k after edit removed or added lines
	// before it.
	at := func(k, shift int) int { return rl[k-1] + shift }
	tests := []struct {
		name string
		edit func(ls [][]byte) [][]byte
		want string
		kind error
	}{
		{"record removed", func(ls [][]byte) [][]byte { return slices.Delete(ls, rl[2]-1, rl[2]) },
			fmt.Sprintf("audit: record 3 (line %d): sequence number 4 where 3 was expected: records before it were removed, or records were inserted or reordered", at(4, -1)),
			audit.ErrSequence},
		{"checkpoint removed", func(ls [][]byte) [][]byte { return slices.Delete(ls, rl[4]-1, rl[4]) },
			fmt.Sprintf("audit: record 5 (line %d): sequence number 6 where 5 was expected: records before it were removed, or records were inserted or reordered", at(6, -1)),
			audit.ErrSequence},
		{"records swapped", func(ls [][]byte) [][]byte {
			ls[rl[5]-1], ls[rl[6]-1] = ls[rl[6]-1], ls[rl[5]-1]
			return ls
		}, fmt.Sprintf("audit: record 6 (line %d): sequence number 7 where 6 was expected: records before it were removed, or records were inserted or reordered", at(6, 0)),
			audit.ErrSequence},
		{"record edited", func(ls [][]byte) [][]byte {
			ls[rl[1]-1] = bytes.Replace(ls[rl[1]-1], []byte(`"method":"GET"`), []byte(`"method":"PUT"`), 1)
			return ls
		}, fmt.Sprintf("audit: record 2 (line %d): its content does not match its hash: the record was changed after it was written", at(2, 0)),
			audit.ErrChanged},
		{"record disguised as another line", func(ls [][]byte) [][]byte {
			ls[rl[1]-1] = append([]byte(" "), ls[rl[1]-1]...)
			return ls
		}, fmt.Sprintf("audit: record 2 (line %d): sequence number 3 where 2 was expected: records before it were removed, or records were inserted or reordered", at(3, 0)),
			audit.ErrSequence},
		{"record cut short", func(ls [][]byte) [][]byte {
			ls[rl[1]-1] = ls[rl[1]-1][:200]
			return ls
		}, fmt.Sprintf("audit: record 2 (line %d): is not a JSON object (unexpected end of JSON input): the file is damaged or is not a kzero audit log", at(2, 0)),
			audit.ErrMalformed},
		{"an event without its chain inserted", func(ls [][]byte) [][]byte {
			plain := slices.Clone(ls[rl[1]-1][:bytes.Index(ls[rl[1]-1], []byte(`,"seq":`))])
			return slices.Insert(ls, rl[1], append(plain, '}'))
		}, fmt.Sprintf("audit: record 3 (line %d): has no sequence number: it is not a record of a chained file", at(2, 1)),
			audit.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tampered := tt.edit(slices.Clone(ls))
			_, err := audit.Verify(bytes.NewReader(join(tampered)), streamOpts(c))
			if err == nil || err.Error() != tt.want || !errors.Is(err, tt.kind) {
				t.Errorf("error:\n got %v\nwant %s", err, tt.want)
			}
		})
	}

	t.Run("every record but the last removed in turn", func(t *testing.T) {
		for k := 1; k < nLines; k++ {
			removed := slices.Delete(slices.Clone(ls), rl[k-1]-1, rl[k-1])
			_, err := audit.Verify(bytes.NewReader(join(removed)), streamOpts(c))
			var re *audit.RecordError
			if !errors.As(err, &re) || !errors.Is(err, audit.ErrSequence) || re.Line != rl[k]-1 || re.Seq != uint64(k) {
				t.Errorf("record %d removed: %v; want record %d, line %d", k, err, k, rl[k]-1)
			}
		}
	})

	t.Run("every record swapped with the next", func(t *testing.T) {
		for k := 1; k < nLines; k++ {
			swapped := slices.Clone(ls)
			swapped[rl[k-1]-1], swapped[rl[k]-1] = swapped[rl[k]-1], swapped[rl[k-1]-1]
			_, err := audit.Verify(bytes.NewReader(join(swapped)), streamOpts(c))
			var re *audit.RecordError
			if !errors.As(err, &re) || !errors.Is(err, audit.ErrSequence) || re.Line != rl[k-1] {
				t.Errorf("records %d and %d swapped: %v; want line %d", k, k+1, err, rl[k-1])
			}
		}
	})

	// The known limit: the last checkpoint removed (or disguised) leaves a
	// stream whose last records are unsigned, which verify reports.
	t.Run("the last checkpoint removed is an unsigned tail", func(t *testing.T) {
		rep, err := audit.Verify(bytes.NewReader(join(slices.Delete(slices.Clone(ls), rl[12]-1, rl[12]))), streamOpts(c))
		if err != nil || rep.UnsignedTail != 2 || rep.Checkpoints != 2 {
			t.Errorf("report %+v, %v; want an unsigned tail of 2", rep, err)
		}
	})
}

// TestStreamChains: a stream that holds several starts of the component,
// one chain each.
func TestStreamChains(t *testing.T) {
	c := newTestCA(t)
	svid := c.svid(t, agentID)
	clk := &clock{now: t0}
	var run1, run2, crashed bytes.Buffer
	writeStream(t, &run1, svid, clk, 5, 3, true)
	writeStream(t, &run2, svid, clk, 4, 3, true)
	writeStream(t, &crashed, svid, clk, 2, 100, false)
	cat := func(runs ...*bytes.Buffer) []byte {
		var b []byte
		for _, r := range runs {
			b = append(b, r.Bytes()...)
		}
		return b
	}
	n1 := len(lines(run1.Bytes()))
	rl2 := recordLines(run2.Bytes())

	t.Run("two runs", func(t *testing.T) {
		rep, err := audit.Verify(bytes.NewReader(cat(&run1, &run2)), streamOpts(c))
		if err != nil {
			t.Fatal(err)
		}
		// Run 1: e e e C e e C (7 records); run 2: e e e C e C (6).
		if rep.Records != 9 || rep.Checkpoints != 4 || len(rep.Chains) != 2 || rep.Last.Seq != 6 ||
			rep.Chains[0].Last.Seq != 7 || rep.Chains[1].FirstLine != n1+rl2[0] || rep.Chains[1].Records != 4 {
			t.Errorf("report %+v", rep)
		}
	})

	t.Run("a run with no checkpoint", func(t *testing.T) {
		log := cat(&run1, &crashed)
		rlc := recordLines(crashed.Bytes())
		_, err := audit.Verify(bytes.NewReader(log), streamOpts(c))
		want := fmt.Sprintf("audit: record 2 (line %d): ends a chain of 2 records (lines %d to %d) that no checkpoint signs: "+
			"nothing proves who wrote them, since anyone can compute a chain's hashes (a component signs one at least every minute and when it stops; accept an unsigned chain with --allow-unsigned)",
			n1+rlc[1], n1+rlc[0], n1+rlc[1])
		if err == nil || err.Error() != want || !errors.Is(err, audit.ErrUnsigned) {
			t.Errorf("error:\n got %v\nwant %s", err, want)
		}
		opts := streamOpts(c)
		opts.AllowUnsigned = true
		rep, err := audit.Verify(bytes.NewReader(log), opts)
		if err != nil || len(rep.Chains) != 2 || rep.Chains[1].Checkpoints != 0 || rep.UnsignedTail != 2 {
			t.Errorf("allowed: %+v, %v", rep, err)
		}
	})

	t.Run("a crashed run, then a signed one", func(t *testing.T) {
		rep, err := audit.Verify(bytes.NewReader(cat(&run1, &crashed, &run2)), func() audit.Options {
			o := streamOpts(c)
			o.AllowUnsigned = true
			return o
		}())
		if err != nil || len(rep.Chains) != 3 || rep.Chains[1].UnsignedTail != 2 || rep.UnsignedTail != 0 {
			t.Errorf("%+v, %v", rep, err)
		}
	})

	t.Run("a run copied", func(t *testing.T) {
		_, err := audit.Verify(bytes.NewReader(cat(&run1, &run1)), streamOpts(c))
		want := fmt.Sprintf("audit: record 1 (line %d): starts a chain that already started at line %d: records were copied", n1+recordLines(run1.Bytes())[0], recordLines(run1.Bytes())[0])
		if err == nil || err.Error() != want || !errors.Is(err, audit.ErrSequence) {
			t.Errorf("error:\n got %v\nwant %s", err, want)
		}
	})

	t.Run("runs swapped", func(t *testing.T) {
		_, err := audit.Verify(bytes.NewReader(cat(&run2, &run1)), streamOpts(c))
		var re *audit.RecordError
		if !errors.As(err, &re) || !errors.Is(err, audit.ErrBackdated) || re.Seq != 4 ||
			!strings.Contains(err.Error(), ", before the checkpoint before it (") {
			t.Errorf("error %v, want run 1's first checkpoint (record 4) backdated", err)
		}
	})

	t.Run("collected from the middle of a run", func(t *testing.T) {
		log := cat(&run1, &run2)
		rl := recordLines(log)
		cut := join(lines(log)[rl[2]-1:]) // from record 3 of run 1
		_, err := audit.Verify(bytes.NewReader(cut), streamOpts(c))
		want := "audit: record 1 (line 1): the log starts at record 3, not 1: the records before it were removed, or it continues an earlier file (verify the files together, or accept that with --continues)"
		if err == nil || err.Error() != want {
			t.Errorf("error:\n got %v\nwant %s", err, want)
		}
		opts := streamOpts(c)
		opts.Continues = true
		rep, err := audit.Verify(bytes.NewReader(cut), opts)
		if err != nil || len(rep.Chains) != 2 || rep.First.Seq != 2 || rep.Records != 3+4 {
			t.Errorf("continues: %+v, %v", rep, err)
		}
	})
}
