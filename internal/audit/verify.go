package audit

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// MaxLineSize is the longest line Verify reads.
const MaxLineSize = 1 << 20

// Options tune Verify. The zero value checks a whole file from its first
// record, and checkpoints' signatures without a trust bundle.
type Options struct {
	// After is the head of the file before this one: the first record
	// must continue it. Zero means the file starts a chain, at record 1,
	// unless Continues.
	After Head
	// Continues accepts a first record that continues a chain whose
	// earlier records are not at hand (a rotated file). Records removed
	// from the start of such a file cannot be detected.
	Continues bool
	// Bundle, if set, must verify every checkpoint's certificate chain as
	// an X.509-SVID at the checkpoint's time.
	Bundle x509bundle.Source
	// TrustDomain, if set, must hold every checkpoint's signer.
	TrustDomain spiffeid.TrustDomain
}

// Report is what Verify found in a log that verifies.
type Report struct {
	// Records counts event records, Checkpoints checkpoints.
	Records, Checkpoints int
	// First is the head the file continues (zero for a new chain); Last is
	// its last record, which the next file or a resumed writer continues.
	First, Last Head
	// Signers are the checkpoints' SPIFFE IDs, in order of first use.
	Signers []spiffeid.ID
	// UnsignedTail counts the records after the last checkpoint. Their
	// integrity rests on the chain alone: if the file was cut after the
	// last checkpoint, nothing shows it.
	UnsignedTail int
	// BundleChecked is true when every checkpoint verified against a
	// trust bundle.
	BundleChecked bool
}

// Verify reads a chained log and checks every record: its own hash, its
// sequence number, its link to the record before it, and every
// checkpoint's signature (and, with opts.Bundle, certificate chain). It
// returns a *RecordError naming the first bad record, an error wrapping
// ErrEmpty for a log with no record, or the reader's error.
func Verify(r io.Reader, opts Options) (Report, error) {
	rep := Report{First: opts.After, Last: opts.After, BundleChecked: opts.Bundle != nil}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), MaxLineSize)
	torn := false
	sc.Split(func(data []byte, atEOF bool) (int, []byte, error) {
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			return i + 1, data[:i], nil
		}
		if atEOF && len(data) > 0 {
			torn = true
			return len(data), data, nil
		}
		return 0, nil, nil
	})
	line := 0
	for sc.Scan() {
		line++
		rec, err := parseRecord(sc.Bytes())
		if err == nil {
			err = link(rec, &rep, line == 1 && opts.Continues)
		}
		if err == nil && rec.Kind == KindCheckpoint {
			err = verifyCheckpoint(rec, opts.Bundle, opts.TrustDomain)
		}
		if err == nil && torn {
			err = &RecordError{Kind: ErrMalformed,
				Detail: "is cut short (no newline at its end): the writer stopped mid-record or the file was cut"}
		}
		if err != nil {
			var re *RecordError
			if !errors.As(err, &re) {
				return rep, err
			}
			re.Line, re.Seq = line, 0
			switch {
			case line > 1 || !opts.Continues:
				re.Seq = rep.Last.Seq + 1
			case rec != nil:
				re.Seq = rec.Seq
			}
			return rep, re
		}
		rep.Last = Head{Seq: rec.Seq, Hash: rec.sum}
		if rec.Kind == KindCheckpoint {
			rep.Checkpoints++
			rep.UnsignedTail = 0
			if !slices.Contains(rep.Signers, rec.Checkpoint.Signer) {
				rep.Signers = append(rep.Signers, rec.Checkpoint.Signer)
			}
		} else {
			rep.Records++
			rep.UnsignedTail++
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return rep, &RecordError{Line: line + 1, Seq: rep.Last.Seq + 1, Kind: ErrMalformed, Cause: err,
				Detail: fmt.Sprintf("is longer than %d bytes: this is not a kzero audit log", MaxLineSize)}
		}
		return rep, fmt.Errorf("audit: reading line %d: %w", line+1, err)
	}
	if line == 0 {
		return rep, fmt.Errorf("%w: no records to verify", ErrEmpty)
	}
	return rep, nil
}

// link checks that rec follows rep.Last; any start is accepted for the
// first record of a file that continues another.
func link(rec *record, rep *Report, anyStart bool) error {
	if anyStart {
		prev, err := hex.DecodeString(rec.Prev)
		if err != nil || rec.Seq == 0 {
			return &RecordError{Kind: ErrMalformed, Detail: "has a bad prev"}
		}
		rep.First = Head{Seq: rec.Seq - 1, Hash: [32]byte(prev)}
		return nil
	}
	want := rep.Last.Seq + 1
	switch {
	case rec.Seq != want && rep.Last.Seq == 0 && rep.Last.Hash == [32]byte{}:
		return &RecordError{Kind: ErrSequence, Detail: fmt.Sprintf(
			"the log starts at record %d, not 1: the records before it were removed, or it continues an earlier file (verify the files together, or accept that with --continues)", rec.Seq)}
	case rec.Seq != want:
		return &RecordError{Kind: ErrSequence, Detail: fmt.Sprintf(
			"sequence number %d where %d was expected: records before it were removed, or records were inserted or reordered", rec.Seq, want)}
	case rec.Prev != hex.EncodeToString(rep.Last.Hash[:]):
		return &RecordError{Kind: ErrSequence, Detail: fmt.Sprintf(
			"its prev is not the hash of record %d before it: a record was replaced, inserted or reordered, or hashes were rewritten", rep.Last.Seq)}
	}
	return nil
}
