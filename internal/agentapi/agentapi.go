// Package agentapi is the wire format of the API between kzero agent and
// kzero authority: HTTPS with JSON bodies. The authority presents its
// X.509-SVID; Attest is the one call made without a client certificate
// (the agent has none yet: it proves itself with a projected service
// account token); every other call needs the agent's X.509-SVID, and the
// authority answers only for what runs on that agent's node.
//
// The package holds types, names and limits only, so that both sides
// share them and neither imports the other.
package agentapi

import (
	"fmt"
	"time"
)

// Paths of the calls, all POST with a JSON body except BundlePath (GET).
const (
	// AttestPath: AttestRequest → AttestResponse, no client certificate.
	AttestPath = "/v1/agent/attest"
	// X509SVIDPath: X509SVIDRequest → X509SVIDResponse, mTLS.
	X509SVIDPath = "/v1/agent/x509svid"
	// JWTSVIDPath: JWTSVIDRequest → JWTSVIDResponse, mTLS.
	JWTSVIDPath = "/v1/agent/jwtsvid"
	// BundlePath: GET, the trust domain's SPIFFE bundle (JWKS, as
	// spiffebundle.Bundle.Marshal makes it), mTLS.
	BundlePath = "/v1/agent/bundle"
)

// TokenAudience is the audience of the service account token the agent
// attests with.
const TokenAudience = "kzero"

// DefaultPort is the authority's port for agents.
const DefaultPort = 8445

// AgentPathPrefix is the path of an agent's SPIFFE ID, followed by its
// node's name: spiffe://<trust-domain>/kzero/agent/<node>.
const AgentPathPrefix = "/kzero/agent/"

// AttestRequest is what an agent proves itself with.
type AttestRequest struct {
	// Token is a projected service account token with audience
	// TokenAudience, bound to the agent's pod.
	Token string `json:"token"`
	// CSR is a PKCS#10 request (DER) for the agent's key; its names are
	// ignored.
	CSR []byte `json:"csr"`
}

// AttestResponse is the agent's X.509-SVID.
type AttestResponse struct {
	// Chain is the certificate chain, DER, leaf first.
	Chain [][]byte `json:"chain"`
}

// X509SVIDRequest asks for the X.509-SVID of a workload of the agent's
// node.
type X509SVIDRequest struct {
	// ID is the SPIFFE ID, spiffe://<td>/ns/<namespace>/sa/<account>.
	ID string `json:"id"`
	// CSR is a PKCS#10 request (DER) for the workload's key.
	CSR []byte `json:"csr"`
}

// X509SVIDResponse is the workload's X.509-SVID.
type X509SVIDResponse struct {
	// Chain is the certificate chain, DER, leaf first.
	Chain [][]byte `json:"chain"`
}

// Limits of a JWT-SVID's audience. The agent's Workload API refuses a
// request over them before it asks the authority, the authority's agent
// API before it checks anything else, and the CA (ca.IssueJWTSVID) before
// it signs. The JWT-SVID standard recommends one audience; an audience is
// usually a URL or a SPIFFE ID, which the SPIFFE-ID standard bounds to
// 2048 bytes.
const (
	// MaxAudiences is the most audiences a JWT-SVID may have.
	MaxAudiences = 16
	// MaxAudienceBytes is the longest an audience may be, in bytes.
	MaxAudienceBytes = 2048
)

// AudienceProblem says what makes audience over the limits (more than
// MaxAudiences values, or a value longer than MaxAudienceBytes), for the
// person who asked, or "" when it is within them. The message quotes no
// audience: it may be as long as the caller liked.
func AudienceProblem(audience []string) string {
	if len(audience) > MaxAudiences {
		return fmt.Sprintf("%d audiences asked for; a JWT-SVID has at most %d, each of at most %d bytes: ask for fewer",
			len(audience), MaxAudiences, MaxAudienceBytes)
	}
	for i, a := range audience {
		if len(a) > MaxAudienceBytes {
			return fmt.Sprintf("audience[%d] is %d bytes long; a JWT-SVID has at most %d audiences, each of at most %d bytes: name the audience with a shorter string, such as its URL or SPIFFE ID",
				i, len(a), MaxAudiences, MaxAudienceBytes)
		}
	}
	return ""
}

// JWTSVIDRequest asks for a JWT-SVID of a workload of the agent's node.
// Audience is within MaxAudiences and MaxAudienceBytes.
type JWTSVIDRequest struct {
	ID       string   `json:"id"`
	Audience []string `json:"audience"`
}

// JWTSVIDResponse is the JWT-SVID.
type JWTSVIDResponse struct {
	Token  string    `json:"token"`
	Expiry time.Time `json:"expiry"`
}

// Error is the body of every answer that is not 200: a message for a
// person, saying what was wrong and what to do.
type Error struct {
	Error string `json:"error"`
}
