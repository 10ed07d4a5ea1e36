package audit_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"kzero.dev/kzero/internal/audit"
)

// The test log: 10 events, a checkpoint every 4 records and one on Close:
// e1 e2 e3 e4 C5 e6 e7 e8 e9 C10 e11 e12 C13. Line n holds record n.
const (
	nEvents = 10
	every   = 4
	nLines  = 13
)

func TestVerifyUntouchedLog(t *testing.T) {
	f := writeLog(t, nil, nEvents, every)
	for _, bundle := range []bool{false, true} {
		opts := audit.Options{}
		if bundle {
			opts = audit.Options{Bundle: f.ca.bundle(), TrustDomain: td}
		}
		rep, err := audit.Verify(bytes.NewReader(f.file.Bytes()), opts)
		if err != nil {
			t.Fatalf("bundle %t: %v", bundle, err)
		}
		if rep.Records != nEvents || rep.Checkpoints != 3 || rep.UnsignedTail != 0 || rep.Last.Seq != nLines ||
			rep.BundleChecked != bundle || !slices.Equal(rep.Signers, []spiffeid.ID{agentID}) {
			t.Errorf("bundle %t: report %+v", bundle, rep)
		}
	}
	if got := len(lines(f.stdout.Bytes())); got != nEvents {
		t.Errorf("stdout has %d lines, want %d", got, nEvents)
	}
}

// wantBadLine checks that err is a *RecordError naming line.
func wantBadLine(t *testing.T, err error, line int, what string) *audit.RecordError {
	t.Helper()
	var re *audit.RecordError
	if !errors.As(err, &re) {
		t.Fatalf("%s: error %v, want a *RecordError naming line %d", what, err, line)
	}
	if re.Line != line || re.Seq != uint64(line) {
		t.Fatalf("%s: error names line %d (record %d), want line %d: %v", what, re.Line, re.Seq, line, err)
	}
	return re
}

// TestEveryByteChanged changes each byte of an event, of a checkpoint in
// the middle and of the last checkpoint, in turn, two ways (one bit; a
// newline), and checks that verify names that record.
func TestEveryByteChanged(t *testing.T) {
	f := writeLog(t, nil, nEvents, every)
	ls := lines(f.file.Bytes())
	for _, k := range []int{1, 3, 5, 12, 13} {
		for pos := range ls[k-1] {
			for _, change := range []func(byte) byte{func(b byte) byte { return b ^ 1 }, func(byte) byte { return '\n' }} {
				tampered := slices.Clone(ls)
				tampered[k-1] = slices.Clone(ls[k-1])
				tampered[k-1][pos] = change(tampered[k-1][pos])
				_, err := audit.Verify(bytes.NewReader(join(tampered)), audit.Options{})
				wantBadLine(t, err, k, "byte "+itoa(pos)+" of line "+itoa(k))
			}
		}
	}
}

func TestRecordRemoved(t *testing.T) {
	f := writeLog(t, nil, nEvents, every)
	ls := lines(f.file.Bytes())
	for k := 1; k < nLines; k++ {
		removed := slices.Delete(slices.Clone(ls), k-1, k)
		_, err := audit.Verify(bytes.NewReader(join(removed)), audit.Options{})
		wantBadLine(t, err, k, "record "+itoa(k)+" removed")
		if !errors.Is(err, audit.ErrSequence) {
			t.Errorf("record %d removed: %v", k, err)
		}
	}
	_, err := audit.Verify(bytes.NewReader(join(ls[1:])), audit.Options{})
	want := "audit: record 1 (line 1): the log starts at record 2, not 1: the records before it were removed, or it continues an earlier file (verify the files together, or accept that with --continues)"
	if err == nil || err.Error() != want {
		t.Errorf("first record removed: error %v, want %s", err, want)
	}
	_, err = audit.Verify(bytes.NewReader(join(slices.Delete(slices.Clone(ls), 6, 7))), audit.Options{})
	want = "audit: record 7 (line 7): sequence number 8 where 7 was expected: records before it were removed, or records were inserted or reordered"
	if err == nil || err.Error() != want {
		t.Errorf("record 7 removed: error %v, want %s", err, want)
	}
}

func TestRecordsSwapped(t *testing.T) {
	f := writeLog(t, nil, nEvents, every)
	ls := lines(f.file.Bytes())
	for k := 1; k < nLines; k++ {
		swapped := slices.Clone(ls)
		swapped[k-1], swapped[k] = swapped[k], swapped[k-1]
		_, err := audit.Verify(bytes.NewReader(join(swapped)), audit.Options{})
		wantBadLine(t, err, k, "records "+itoa(k)+" and "+itoa(k+1)+" swapped")
		if !errors.Is(err, audit.ErrSequence) {
			t.Errorf("swap at %d: %v", k, err)
		}
	}
}

func TestRecordInserted(t *testing.T) {
	f := writeLog(t, nil, nEvents, every)
	other := writeLog(t, f.ca, nEvents, every)
	ls, ols := lines(f.file.Bytes()), lines(other.file.Bytes())
	// A record of another log with the right sequence number: its prev
	// does not link.
	inserted := slices.Insert(slices.Clone(ls), 6, ols[6])
	_, err := audit.Verify(bytes.NewReader(join(inserted)), audit.Options{})
	want := "audit: record 7 (line 7): its prev is not the hash of record 6 before it: a record was replaced, inserted or reordered, or hashes were rewritten"
	if err == nil || err.Error() != want {
		t.Errorf("inserted: error %v, want %s", err, want)
	}
	// A copy of a record.
	inserted = slices.Insert(slices.Clone(ls), 3, ls[2])
	_, err = audit.Verify(bytes.NewReader(join(inserted)), audit.Options{})
	wantBadLine(t, err, 4, "record 3 repeated")
}

// TestRewrittenChainNeedsTheKey: someone without the SVID key edits record
// 7 and rewrites every hash after it so that the chain links again; the
// next checkpoint's signature gives it away.
func TestRewrittenChainNeedsTheKey(t *testing.T) {
	f := writeLog(t, nil, nEvents, every)
	ls := lines(f.file.Bytes())
	ls[6] = bytes.Replace(ls[6], []byte(`"verdict":"allow"`), []byte(`"verdict":"deny"`), 1)
	reseal(t, ls, 7)
	_, err := audit.Verify(bytes.NewReader(join(ls)), audit.Options{})
	want := "audit: record 10 (line 10): checkpoint's signature does not verify: the checkpoint was changed or forged"
	if err == nil || err.Error() != want || !errors.Is(err, audit.ErrSignature) {
		t.Errorf("error %v, want %s", err, want)
	}
}

// reseal recomputes prev and hash of lines from record `from` on, as a
// forger without the key would.
func reseal(t *testing.T, ls [][]byte, from int) {
	t.Helper()
	prev := ""
	for i := from - 1; i < len(ls); i++ {
		l := ls[i]
		body := l[:bytes.LastIndex(l, []byte(`,"hash":"`))]
		if prev != "" {
			p := bytes.LastIndex(body, []byte(`,"prev":"`)) + len(`,"prev":"`)
			body = append(append(slices.Clone(body[:p]), prev...), body[p+64:]...)
		}
		sum := sha256.Sum256(body)
		prev = hex.EncodeToString(sum[:])
		ls[i] = append(slices.Clone(body), `,"hash":"`+prev+`"}`...)
	}
}

func TestTruncated(t *testing.T) {
	f := writeLog(t, nil, nEvents, every)
	ls := lines(f.file.Bytes())
	// Cut before the last checkpoint: the tail is unsigned, and reported.
	rep, err := audit.Verify(bytes.NewReader(join(ls[:12])), audit.Options{})
	if err != nil || rep.UnsignedTail != 2 || rep.Records != 10 || rep.Checkpoints != 2 {
		t.Errorf("cut before the last checkpoint: %+v, %v; want 2 unsigned records", rep, err)
	}
	// Cut right after a checkpoint: nothing shows it (the docs say so).
	rep, err = audit.Verify(bytes.NewReader(join(ls[:5])), audit.Options{})
	if err != nil || rep.UnsignedTail != 0 || rep.Records != 4 {
		t.Errorf("cut after checkpoint 5: %+v, %v", rep, err)
	}
	// Cut inside a line.
	cut := join(ls[:12])
	cut = cut[:len(cut)-10]
	_, err = audit.Verify(bytes.NewReader(cut), audit.Options{})
	wantBadLine(t, err, 12, "cut inside line 12")
	// Cut at the newline only: the last record is whole but unterminated.
	cut = join(ls)
	_, err = audit.Verify(bytes.NewReader(cut[:len(cut)-1]), audit.Options{})
	want := "audit: record 13 (line 13): is cut short (no newline at its end): the writer stopped mid-record or the file was cut"
	if err == nil || err.Error() != want {
		t.Errorf("error %v, want %s", err, want)
	}
}

func itoa(i int) string { return string(appendInt(nil, i)) }

func appendInt(b []byte, i int) []byte {
	if i >= 10 {
		b = appendInt(b, i/10)
	}
	return append(b, byte('0'+i%10))
}
