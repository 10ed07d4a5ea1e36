// Package tunnel is kzero's HBONE: TCP streams carried between nodes as
// HTTP/2 CONNECT requests over mutual TLS with SPIFFE X.509-SVIDs, on port
// 15008, as Istio's ztunnel carries them, so that the two can talk.
//
// A [Client] holds one source identity's SVID and opens a stream to a
// destination address (a pod's ip:port) through the destination's tunnel
// endpoint (that pod's address, port 15008), checking that the endpoint
// proves the destination's SPIFFE ID. HTTP/2 connections between the same
// pair of identities and the same endpoint are pooled and reused: a new
// stream costs no handshake.
//
// A [Server] accepts those streams. It verifies the peer's SVID against the
// trust bundle, asks its Authorizer whether that identity may reach the
// requested address, and then either connects the stream to it or refuses
// the CONNECT with 403 and the reason, which the Client returns as a
// [*RefusedError].
//
// The HTTP/2 is the package's own, over golang.org/x/net/http2's framer and
// HPACK (h2.go says why), and holds to net/http's in the tests.
//
// What carries the streams to and from the pods (the
// redirection inside each pod's network namespace) and what decides
// (policy) are the agent's; this package knows neither Kubernetes nor
// policy.
package tunnel

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Port is the HBONE port every enrolled pod's tunnel endpoint listens on.
const Port = 15008

// ReasonHeader is the response header in which a Server says why it
// refused a CONNECT.
const ReasonHeader = "Kzero-Reason"

// maxReason bounds a refusal's reason, in a header and in an error.
const maxReason = 512

// Request is what a Server asks its Authorizer: may Source reach
// Destination?
type Request struct {
	// Source is the peer's SPIFFE ID, from its verified X.509-SVID.
	Source spiffeid.ID
	// Destination is the address the peer asked for (the CONNECT's
	// authority).
	Destination netip.AddrPort
}

// Decision is an Authorizer's answer.
type Decision struct {
	// Allow lets the stream through.
	Allow bool
	// Reason says why, in words a person reads in the client's error and
	// in the audit trail (which policy and rule, or why none applied).
	Reason string
}

// RefusedError is a CONNECT the tunnel endpoint answered with another
// status than 200.
type RefusedError struct {
	// Status is the endpoint's HTTP status: 403 when its Authorizer
	// refused, 400 for a malformed request, 502 when the destination
	// could not be reached.
	Status int
	// Reason is the endpoint's reason (its ReasonHeader), if any.
	Reason string
}

func (e *RefusedError) Error() string {
	msg := fmt.Sprintf("tunnel: the tunnel endpoint refused the stream: %d %s", e.Status, http.StatusText(e.Status))
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	return msg
}

// IsRefused reports whether err is a refusal of the tunnel endpoint with
// status 403, the Authorizer's.
func IsRefused(err error) bool {
	var r *RefusedError
	return errors.As(err, &r) && r.Status == http.StatusForbidden
}

// cleanReason makes s fit in a header: printable ASCII, at most maxReason
// bytes.
func cleanReason(s string) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= maxReason {
			break
		}
		if r < 0x20 || r > 0x7e {
			r = '?'
		}
		b.WriteRune(r)
	}
	return b.String()
}
