package audit

import (
	"errors"
	"fmt"
)

// Sentinel errors. Verify's failures are a *RecordError whose Unwrap
// returns one of the Err* sentinels after ErrEmpty, so that a machine
// decides with errors.Is and a person reads the RecordError's message.
var (
	// ErrInvalidEvent: an event that does not follow the schema, returned
	// by Event.Validate and Recorder.Record.
	ErrInvalidEvent = errors.New("audit: invalid event")
	// ErrClosed: a Recorder or Chain used after Close.
	ErrClosed = errors.New("audit: closed")
	// ErrBroken: an earlier write to a chain's stream or file failed, so
	// that it may end in part of a record; nothing more is appended to it.
	ErrBroken = errors.New("audit: chain broken by an earlier write error")
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
	// ErrUntrusted: a checkpoint signed by someone the verifier does not
	// trust: a signer that is not one of Options.Signers, outside the
	// trust domain, or whose certificate chain does not verify against the
	// trust bundle. Every pod of an enrolled namespace holds an SVID of the
	// trust domain, so only the expected signer proves who wrote the log.
	ErrUntrusted = errors.New("audit: checkpoint signer not trusted")
	// ErrUnsigned: a chain that holds no checkpoint, when
	// Options.AllowUnsigned is false: anyone can compute a chain's
	// hashes, so nothing proves who wrote it.
	ErrUnsigned = errors.New("audit: chain not signed")
	// ErrBackdated: a checkpoint dated before the checkpoint before it: it
	// was signed later than it claims (with a key since expired, say), or
	// moved, or the writer's clock went back.
	ErrBackdated = errors.New("audit: checkpoint older than the one before it")
)

// RecordError names the first bad record of a log and says what is wrong
// with it.
type RecordError struct {
	// Line is the line's number in the log, from 1; for ErrUnsigned, the
	// line of the chain's last record.
	Line int
	// Seq is the sequence number the record on that line should have,
	// one more than the last good record's; 0 when unknown (the first line
	// of a file that continues another). For ErrUnsigned, the chain's last
	// record's.
	Seq uint64
	// Kind is one of the sentinels ErrMalformed, ErrChanged, ErrSequence,
	// ErrSignature, ErrUntrusted, ErrUnsigned, ErrBackdated.
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
