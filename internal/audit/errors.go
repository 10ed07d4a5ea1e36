package audit

import (
	"errors"
	"fmt"
)

// Sentinel errors. Verify's failures are a *RecordError whose Unwrap
// returns one of the Err* sentinels below ErrEmpty, so that a machine
// decides with errors.Is and a person reads the RecordError's message.
var (
	// ErrInvalidEvent: an event that does not follow the schema, returned
	// by Event.Validate and Recorder.Record.
	ErrInvalidEvent = errors.New("audit: invalid event")
	// ErrClosed: a Recorder or Chain used after Close.
	ErrClosed = errors.New("audit: closed")
	// ErrBroken: an earlier write to the chained file failed, so that the
	// file may end in part of a record; nothing more is appended to it.
	ErrBroken = errors.New("audit: chained file broken by an earlier write error")
	// ErrCheckpoint: a checkpoint could not be signed or written. The
	// record before it was written.
	ErrCheckpoint = errors.New("audit: checkpoint failed")

	// ErrEmpty: the log holds no record.
	ErrEmpty = errors.New("audit: empty log")
	// ErrMalformed: a line that is not a record of this schema (not JSON,
	// no hash at its end, an unknown schema, a missing field), or a last
	// line cut short.
	ErrMalformed = errors.New("audit: malformed record")
	// ErrChanged: a record whose content does not match its own hash.
	ErrChanged = errors.New("audit: record changed")
	// ErrSequence: a record whose sequence number or link to the record
	// before it is wrong: records were removed, inserted or reordered.
	ErrSequence = errors.New("audit: records removed, inserted or reordered")
	// ErrSignature: a checkpoint whose signature or certificate chain
	// does not verify.
	ErrSignature = errors.New("audit: bad checkpoint signature")
	// ErrUntrusted: a checkpoint whose certificate chain does not verify
	// against the trust bundle, or whose signer is outside the trust domain.
	ErrUntrusted = errors.New("audit: checkpoint signer not trusted")
)

// RecordError names the first bad record of a log and says what is wrong
// with it.
type RecordError struct {
	// Line is the line's number in the file, from 1.
	Line int
	// Seq is the sequence number the record on that line should have,
	// one more than the last good record's; 0 when unknown (the first line
	// of a file that continues another).
	Seq uint64
	// Kind is one of the sentinels ErrMalformed, ErrChanged, ErrSequence,
	// ErrSignature, ErrUntrusted.
	Kind error
	// Detail says what is wrong and what it means, without the prefix.
	Detail string
	// Cause is the lower-level error, if any, kept for errors.Is and left
	// out of the message.
	Cause error
}

func (e *RecordError) Error() string {
	if e.Seq == 0 {
		return fmt.Sprintf("audit: line %d: %s", e.Line, e.Detail)
	}
	return fmt.Sprintf("audit: record %d (line %d): %s", e.Seq, e.Line, e.Detail)
}

// Unwrap returns the sentinel and the cause.
func (e *RecordError) Unwrap() []error {
	if e.Cause == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Cause}
}
