package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Head is the end of a chain: the sequence number and hash of its last
// record. The zero Head is the start of a new chain, whose first record has
// sequence number 1 and, as prev, 64 zeros.
type Head struct {
	Seq  uint64
	Hash [sha256.Size]byte
}

// String returns "<seq>:<hash, hex>".
func (h Head) String() string {
	return strconv.FormatUint(h.Seq, 10) + ":" + hex.EncodeToString(h.Hash[:])
}

// The members every record ends with, in this order: seq, prev, for a
// checkpoint sig, then hash, which must be last.
const (
	hashMember = `,"hash":"`
	sigMember  = `,"sig":"`
	hexLen     = 2 * sha256.Size
	// hashTail is the length of `,"hash":"<64 hex>"}`.
	hashTail = len(hashMember) + hexLen + len(`"}`)
)

// openRecord appends to dst the JSON object body without its closing
// brace, then its sequence number and the previous record's hash.
func openRecord(dst, body []byte, seq uint64, prev *[sha256.Size]byte) []byte {
	dst = append(dst, body[:len(body)-1]...)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, `,"prev":"`...)
	dst = hex.AppendEncode(dst, prev[:])
	return append(dst, '"')
}

// closeRecord appends the hash of everything before it, and the closing
// brace; it returns the finished line (no newline) and the hash.
func closeRecord(line []byte) ([]byte, [sha256.Size]byte) {
	sum := sha256.Sum256(line)
	line = append(line, hashMember...)
	line = hex.AppendEncode(line, sum[:])
	return append(line, `"}`...), sum
}

// record is one line of a chained file, as Verify reads it.
type record struct {
	Schema     string        `json:"schema"`
	Time       time.Time     `json:"time"`
	Kind       Kind          `json:"kind"`
	Seq        uint64        `json:"seq"`
	Prev       string        `json:"prev"`
	Sig        string        `json:"sig"`
	Checkpoint *checkpointV1 `json:"checkpoint"`

	// sum is the SHA-256 of the line before its hash member.
	sum [sha256.Size]byte
	// signed is, for a checkpoint, the bytes its signature covers: the
	// line before its sig member.
	signed []byte
}

// checkpointV1 is a checkpoint's payload.
type checkpointV1 struct {
	// Signer is the SPIFFE ID of the SVID whose key signed.
	Signer spiffeid.ID `json:"signer"`
	// Alg is ES256 (ECDSA P-256, SHA-256) or ES384 (P-384, SHA-384).
	Alg string `json:"alg"`
	// X5C is the SVID's certificate chain, leaf first, DER (base64 in
	// JSON).
	X5C [][]byte `json:"x5c"`
}

// parseRecord parses one line, without its newline, and checks it against
// its own hash. Its errors are *RecordError without a line number.
func parseRecord(line []byte) (*record, error) {
	if len(line) == 0 {
		return nil, &RecordError{Kind: ErrMalformed, Detail: "is empty: a chained file has no empty lines"}
	}
	var r record
	if err := json.Unmarshal(line, &r); err != nil {
		return nil, &RecordError{Kind: ErrMalformed, Cause: err,
			Detail: fmt.Sprintf("is not a JSON object (%v): the file is damaged or is not a kzero audit log", err)}
	}
	bad := func(kind error, format string, args ...any) (*record, error) {
		return nil, &RecordError{Kind: kind, Detail: fmt.Sprintf(format, args...)}
	}
	if r.Schema != Schema {
		return bad(ErrMalformed, "schema %q is not %q: this kzero reads no other", r.Schema, Schema)
	}
	if r.Seq == 0 {
		return bad(ErrMalformed, "has no sequence number: it is not a record of a chained file")
	}
	n := len(line)
	if n < hashTail || string(line[n-hashTail:n-hashTail+len(hashMember)]) != hashMember ||
		!isHex(line[n-hexLen-2:n-2]) || string(line[n-2:]) != `"}` {
		return bad(ErrMalformed, `does not end with its hash (,"hash":"<64 hex digits>"}): the record was changed or cut`)
	}
	if !isHex([]byte(r.Prev)) {
		return bad(ErrMalformed, "prev %q is not 64 lowercase hex digits: the record was changed", r.Prev)
	}
	body := line[:n-hashTail]
	r.sum = sha256.Sum256(body)
	if !bytes.Equal(hex.AppendEncode(nil, r.sum[:]), line[n-hexLen-2:n-2]) {
		return bad(ErrChanged, "its content does not match its hash: the record was changed after it was written")
	}
	if r.Kind != KindCheckpoint {
		if r.Sig != "" || r.Checkpoint != nil {
			return bad(ErrMalformed, "carries a signature or checkpoint but is of kind %q", r.Kind)
		}
		return &r, nil
	}
	j := bytes.LastIndex(body, []byte(sigMember))
	if r.Checkpoint == nil || r.Time.IsZero() || j < 0 || body[len(body)-1] != '"' ||
		string(body[j+len(sigMember):len(body)-1]) != r.Sig || r.Sig == "" {
		return bad(ErrMalformed, `is a checkpoint without time, checkpoint and, last before its hash, sig`)
	}
	r.signed = body[:j]
	return &r, nil
}

// isHex reports whether b is 64 lowercase hex digits.
func isHex(b []byte) bool {
	if len(b) != hexLen {
		return false
	}
	for _, c := range b {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
