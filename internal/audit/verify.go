package audit

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// MaxLineSize is the longest line Verify reads as a record.
const MaxLineSize = 1 << 20

// Options tune Verify. The zero value checks a chained file from its first
// record, requires a checkpoint, and checks checkpoints' signatures but
// not who signed them: give Signers and Bundle for that.
type Options struct {
	// After is the head of the file before this one: the first record
	// must continue it. Zero means the file starts a chain, at record 1,
	// unless Continues.
	After Head
	// Continues accepts a first record that continues a chain whose
	// earlier records are not at hand (a rotated file, or a stream
	// collected from the middle). Records removed from the start of such a
	// log cannot be detected.
	Continues bool
	// Bundle, if set, must verify every checkpoint's certificate chain as
	// an X.509-SVID at the checkpoint's time. Without it a checkpoint's
	// certificate proves nothing about its signer: anyone can make a
	// certificate that names any SPIFFE ID.
	Bundle x509bundle.Source
	// TrustDomain, if set, must hold every checkpoint's signer.
	TrustDomain spiffeid.TrustDomain
	// Signers, if set, are the SPIFFE IDs that may sign checkpoints: the
	// component that writes the log. A checkpoint signed by any other
	// fails with ErrUntrusted. Without them any signer that the other
	// checks accept will do, and every pod of an enrolled namespace has an
	// SVID of the trust domain.
	Signers []spiffeid.ID
	// AllowUnsigned accepts a chain that holds no checkpoint. Its records
	// are then checked against each other only: anyone can compute a
	// chain's hashes, so nothing proves who wrote them.
	AllowUnsigned bool
	// NotBefore is the time of the last checkpoint of the log before this
	// one (its Report.LastCheckpoint): a checkpoint dated before it fails
	// with ErrBackdated, as one dated before the checkpoint before it in
	// this log does.
	NotBefore time.Time
	// Stream reads a log stream as collected from a component's standard
	// output and error (kubectl logs, a log shipper's file) rather than a
	// chained file: lines that are not kzero audit records are skipped and
	// counted, a line may start with the time kubectl logs --timestamps
	// adds, and each start of the component begins a new chain at record
	// 1. A line that starts as a record ({"schema":"kzero.dev/audit/...)
	// must be a whole one.
	Stream bool
}

// Report is what Verify found in a log that verifies.
type Report struct {
	// Records counts event records, Checkpoints checkpoints, in all the
	// log's chains.
	Records, Checkpoints int
	// First is the head the log continues (zero for a new chain); Last is
	// its last record, which the next file or a resumed writer continues.
	First, Last Head
	// Signers are the checkpoints' SPIFFE IDs, in order of first use.
	Signers []spiffeid.ID
	// UnsignedTail counts the records after the last checkpoint. Their
	// integrity rests on the chain alone: if the log was cut after the
	// last checkpoint, nothing shows it.
	UnsignedTail int
	// BundleChecked is true when every checkpoint verified against a
	// trust bundle.
	BundleChecked bool
	// Chains are the log's chains in order: one for a file; in a stream,
	// one for each start of the component.
	Chains []ChainReport
	// Skipped counts the lines of a stream that are not audit records.
	Skipped int
	// LastCheckpoint is the time of the last checkpoint (Options.NotBefore
	// when the log holds none): the next file's Options.NotBefore.
	LastCheckpoint time.Time
}

// ChainReport is one chain of a log that verifies.
type ChainReport struct {
	// First is the head the chain continues (zero when it starts at
	// record 1); Last is its last record.
	First, Last Head
	// FirstLine and LastLine are the lines of its first and last record.
	FirstLine, LastLine int
	// Records, Checkpoints and UnsignedTail count as Report's do.
	Records, Checkpoints, UnsignedTail int
}

// Verify reads a chained log and checks every record: its own hash, its
// sequence number, its link to the record before it, and every
// checkpoint's signature, signer (opts.Signers, opts.TrustDomain), time
// and, with opts.Bundle, certificate chain; and that every chain holds a
// checkpoint unless opts.AllowUnsigned. It returns a *RecordError naming
// the first bad record, an error wrapping ErrEmpty for a log with no
// record, or the reader's error.
func Verify(r io.Reader, opts Options) (Report, error) {
	v := &verifier{opts: opts, rep: Report{
		First: opts.After, Last: opts.After, BundleChecked: opts.Bundle != nil, LastCheckpoint: opts.NotBefore,
	}}
	lr := lineReader{r: bufio.NewReaderSize(r, 64<<10)}
	n := 0
	for {
		l, err := lr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return v.rep, fmt.Errorf("audit: reading line %d: %w", n+1, err)
		}
		n++
		if err := v.line(n, l); err != nil {
			return v.rep, err
		}
	}
	switch {
	case len(v.rep.Chains) > 0:
		return v.rep, v.endChain()
	case v.rep.Skipped > 0:
		return v.rep, fmt.Errorf("%w: none of its %d lines is a kzero audit record", ErrEmpty, v.rep.Skipped)
	}
	return v.rep, fmt.Errorf("%w: no records to verify", ErrEmpty)
}

// recordStart is how every record begins; in a stream, a line that begins
// so is a record, and must verify as one.
var recordStart = []byte(`{"schema":"kzero.dev/audit/`)

// zeroPrev is the prev of a chain's first record.
const zeroPrev = "0000000000000000000000000000000000000000000000000000000000000000"

// verifier is Verify's state between lines.
type verifier struct {
	opts Options
	rep  Report
	// starts are the lines of the chains' first records, by their hash: a
	// chain seen twice in a stream was copied.
	starts map[[32]byte]int
}

// line checks the n-th line of the log.
func (v *verifier) line(n int, l logLine) error {
	text := l.text
	if v.opts.Stream {
		text = stripTimestamp(text)
		if !bytes.HasPrefix(text, recordStart) {
			v.rep.Skipped++
			return nil
		}
	}
	if l.long {
		return v.fail(n, nil, &RecordError{Kind: ErrMalformed,
			Detail: fmt.Sprintf("is longer than %d bytes: this is not a kzero audit log", MaxLineSize)})
	}
	if !v.opts.Stream && len(text) > 0 && !bytes.HasPrefix(text, recordStart) {
		return v.fail(n, nil, &RecordError{Kind: ErrMalformed, Detail: `does not start as a record does ({"schema":"kzero.dev/audit/...): ` +
			"the file is damaged or is not a chained audit file; a log stream with other lines in it, such as kubectl logs output, verifies with --stream"})
	}
	rec, err := parseRecord(text)
	if err != nil {
		return v.fail(n, nil, err)
	}
	first, fresh := len(v.rep.Chains) == 0, v.startsChain(rec)
	if fresh && !first {
		if err := v.endChain(); err != nil {
			return err
		}
	}
	var prev Head
	anyStart := first && v.opts.Continues
	switch {
	case fresh:
	case first:
		prev = v.opts.After
	default:
		prev = v.rep.Chains[len(v.rep.Chains)-1].Last
	}
	start, err := link(rec, prev, anyStart)
	if err != nil {
		return v.fail(n, rec, err)
	}
	if first || fresh {
		if err := v.begin(n, rec, start); err != nil {
			return err
		}
	}
	if rec.Kind == KindCheckpoint {
		if err := v.checkpoint(rec); err != nil {
			return v.fail(n, rec, err)
		}
	}
	if l.torn {
		return v.fail(n, rec, &RecordError{Kind: ErrMalformed,
			Detail: "is cut short (no newline at its end): the writer stopped mid-record or the file was cut"})
	}
	v.count(n, rec)
	return nil
}

// startsChain reports whether rec, if parsed, begins a new chain of a
// stream: record 1, linked to nothing. (A file holds one chain.)
func (v *verifier) startsChain(rec *record) bool {
	return v.opts.Stream && rec != nil && rec.Seq == 1 && rec.Prev == zeroPrev
}

// begin starts a chain at rec, the n-th line, which continues start.
func (v *verifier) begin(n int, rec *record, start Head) error {
	if v.opts.Stream && rec.Seq == 1 {
		if at, ok := v.starts[rec.sum]; ok {
			return v.fail(n, rec, &RecordError{Kind: ErrSequence, Detail: fmt.Sprintf(
				"starts a chain that already started at line %d: records were copied", at)})
		}
		if v.starts == nil {
			v.starts = map[[32]byte]int{}
		}
		v.starts[rec.sum] = n
	}
	if len(v.rep.Chains) == 0 {
		v.rep.First = start
	}
	v.rep.Chains = append(v.rep.Chains, ChainReport{First: start, Last: start, FirstLine: n})
	return nil
}

// checkpoint checks a checkpoint's signature and signer, and that it is
// not older than the one before it.
func (v *verifier) checkpoint(rec *record) error {
	if err := verifyCheckpoint(rec, &v.opts); err != nil {
		return err
	}
	if last := v.rep.LastCheckpoint; rec.Time.Before(last) {
		return &RecordError{Kind: ErrBackdated, Detail: fmt.Sprintf(
			"checkpoint dated %s, before the checkpoint before it (%s): it was signed later than it says, with a key since expired, or moved; or the writer's clock went back",
			rec.Time.UTC().Format(TimeFormat), last.UTC().Format(TimeFormat))}
	}
	return nil
}

// count adds rec, the n-th line, to the report.
func (v *verifier) count(n int, rec *record) {
	c := &v.rep.Chains[len(v.rep.Chains)-1]
	c.Last, c.LastLine = Head{Seq: rec.Seq, Hash: rec.sum}, n
	if rec.Kind == KindCheckpoint {
		c.Checkpoints++
		c.UnsignedTail = 0
		v.rep.Checkpoints++
		v.rep.LastCheckpoint = rec.Time
		if !slices.Contains(v.rep.Signers, rec.Checkpoint.Signer) {
			v.rep.Signers = append(v.rep.Signers, rec.Checkpoint.Signer)
		}
	} else {
		c.Records++
		c.UnsignedTail++
		v.rep.Records++
	}
	v.rep.Last, v.rep.UnsignedTail = c.Last, c.UnsignedTail
}

// endChain checks that the last chain holds a checkpoint.
func (v *verifier) endChain() error {
	c := v.rep.Chains[len(v.rep.Chains)-1]
	if c.Checkpoints > 0 || v.opts.AllowUnsigned {
		return nil
	}
	return &RecordError{Line: c.LastLine, Seq: c.Last.Seq, Kind: ErrUnsigned, Detail: fmt.Sprintf(
		"ends a chain of %s (lines %d to %d) that no checkpoint signs: nothing proves who wrote them, since anyone can compute a chain's hashes (a component signs one at least every minute and when it stops; accept an unsigned chain with --allow-unsigned)",
		plural(c.Records, "record"), c.FirstLine, c.LastLine)}
}

// plural is "1 record", "2 records".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// fail completes err, from the n-th line, with the line and the sequence
// number the record there should have; rec is the record, when it parsed.
func (v *verifier) fail(n int, rec *record, err error) error {
	var re *RecordError
	if !errors.As(err, &re) {
		return err
	}
	re.Line, re.Seq = n, 0
	switch {
	case v.startsChain(rec):
		re.Seq = 1
	case len(v.rep.Chains) > 0:
		re.Seq = v.rep.Chains[len(v.rep.Chains)-1].Last.Seq + 1
	case !v.opts.Continues:
		re.Seq = v.opts.After.Seq + 1
	case rec != nil:
		re.Seq = rec.Seq
	}
	return re
}

// link checks that rec follows prev and returns the head its chain
// continues; any start is accepted for the first record of a log that
// continues another.
func link(rec *record, prev Head, anyStart bool) (Head, error) {
	if anyStart {
		h, err := hex.DecodeString(rec.Prev)
		if err != nil || rec.Seq == 0 {
			return Head{}, &RecordError{Kind: ErrMalformed, Detail: "has a bad prev"}
		}
		return Head{Seq: rec.Seq - 1, Hash: [32]byte(h)}, nil
	}
	want := prev.Seq + 1
	switch {
	case rec.Seq != want && prev.Seq == 0 && prev.Hash == [32]byte{}:
		return prev, &RecordError{Kind: ErrSequence, Detail: fmt.Sprintf(
			"the log starts at record %d, not 1: the records before it were removed, or it continues an earlier file (verify the files together, or accept that with --continues)", rec.Seq)}
	case rec.Seq != want:
		return prev, &RecordError{Kind: ErrSequence, Detail: fmt.Sprintf(
			"sequence number %d where %d was expected: records before it were removed, or records were inserted or reordered", rec.Seq, want)}
	case rec.Prev != hex.EncodeToString(prev.Hash[:]):
		return prev, &RecordError{Kind: ErrSequence, Detail: fmt.Sprintf(
			"its prev is not the hash of record %d before it: a record was replaced, inserted or reordered, or hashes were rewritten", prev.Seq)}
	}
	return prev, nil
}

// logLine is one line of a log, without its newline.
type logLine struct {
	text []byte
	// torn: the log ends in this line, with no newline.
	torn bool
	// long: the line is longer than MaxLineSize, and text only its start.
	long bool
}

// lineReader reads a log line by line, keeping at most MaxLineSize+1
// bytes of a line.
type lineReader struct {
	r   *bufio.Reader
	buf []byte
}

// next returns the next line, valid until the next call, or io.EOF.
func (lr *lineReader) next() (logLine, error) {
	lr.buf = lr.buf[:0]
	var l logLine
	for {
		chunk, err := lr.r.ReadSlice('\n')
		if err == nil && len(lr.buf) == 0 && len(chunk) <= MaxLineSize+1 {
			l.text = chunk[:len(chunk)-1] // the whole line in the reader's buffer: no copy
			return l, nil
		}
		if room := MaxLineSize + 1 - len(lr.buf); len(chunk) > room {
			chunk, l.long = chunk[:room], true
		}
		lr.buf = append(lr.buf, chunk...)
		switch {
		case err == nil && !l.long:
			l.text = lr.buf[:len(lr.buf)-1]
		case err == nil:
			l.text = lr.buf
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(lr.buf) == 0:
			return l, io.EOF
		case errors.Is(err, io.EOF):
			l.text, l.torn = lr.buf, true
		default:
			return l, err
		}
		l.long = l.long || len(l.text) > MaxLineSize
		return l, nil
	}
}

// stripTimestamp removes the time that kubectl logs --timestamps puts
// before a line: RFC 3339 with nanoseconds, then a space.
func stripTimestamp(l []byte) []byte {
	if len(l) == 0 || l[0] < '0' || l[0] > '9' {
		return l
	}
	i := bytes.IndexByte(l, ' ')
	if i < 0 || i > len("2006-01-02T15:04:05.999999999+07:00") {
		return l
	}
	if _, err := time.Parse(time.RFC3339Nano, string(l[:i])); err != nil {
		return l
	}
	return l[i+1:]
}
