package ca

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every refusal of a request is a *RequestError whose
// Unwrap returns one of these, so callers decide with errors.Is and show
// people the RequestError's own message.
var (
	// ErrInvalidCSR: the request has no CSR (and no public key with a
	// proof of possession), or the PKCS#10 request does not parse.
	ErrInvalidCSR = errors.New("ca: invalid certificate request")
	// ErrInvalidProof: a public key with its proof of possession that
	// is incomplete or does not parse, or that comes with a CSR too.
	ErrInvalidProof = errors.New("ca: invalid proof of possession")
	// ErrBadSignature: the request's signature, its proof of possession of
	// the private key, does not verify.
	ErrBadSignature = errors.New("ca: signature does not verify")
	// ErrUnsupportedKey: a key type or size the CA does not certify.
	ErrUnsupportedKey = errors.New("ca: unsupported key")
	// ErrCARequested: the request asks for a CA certificate.
	ErrCARequested = errors.New("ca: CA certificate requested")
	// ErrExtraSAN: the request names subject alternative names other than
	// the one SPIFFE ID being certified.
	ErrExtraSAN = errors.New("ca: extra subject alternative name")
	// ErrInvalidID: a SPIFFE ID that is not valid per the SPIFFE-ID standard
	// or, for an SVID, has no path.
	ErrInvalidID = errors.New("ca: invalid SPIFFE ID")
	// ErrForeignTrustDomain: a SPIFFE ID outside the CA's trust domain.
	ErrForeignTrustDomain = errors.New("ca: SPIFFE ID outside the trust domain")
	// ErrTTLTooLong: a requested lifetime over the configured maximum.
	ErrTTLTooLong = errors.New("ca: TTL over the maximum")
	// ErrInvalidTTL: a negative lifetime.
	ErrInvalidTTL = errors.New("ca: invalid TTL")
	// ErrNoAudience: a JWT-SVID request or validation without an audience.
	ErrNoAudience = errors.New("ca: no audience")
	// ErrAudienceLimit: a JWT-SVID request with more audiences, or a
	// longer one, than agentapi.MaxAudiences and agentapi.MaxAudienceBytes.
	ErrAudienceLimit = errors.New("ca: audience over the limits")
	// ErrNoAuthority: no CA or JWT key is valid now; Rotate repairs it.
	ErrNoAuthority = errors.New("ca: no valid signing authority")
)

// RequestError is a refused request. Error returns a message for a person
// (what was wrong and what to do); Unwrap returns the sentinel that names
// the kind of refusal for a machine.
type RequestError struct {
	// Kind is one of the Err* sentinels of this package.
	Kind error
	// Detail says what was wrong and what to do, without the "ca: " prefix.
	Detail string
	// Cause is the lower-level error behind the refusal, if any, kept for
	// logs and errors.Is but left out of the message.
	Cause error
}

func (e *RequestError) Error() string { return "ca: " + e.Detail }

// Unwrap returns the sentinel, so that errors.Is(err, ErrTTLTooLong) works,
// and the cause.
func (e *RequestError) Unwrap() []error {
	if e.Cause == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Cause}
}

func refuse(kind error, format string, args ...any) *RequestError {
	return &RequestError{Kind: kind, Detail: fmt.Sprintf(format, args...)}
}
