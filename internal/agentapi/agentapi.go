// Package agentapi is the wire format of the API between kzero agent and
// kzero authority: HTTPS with JSON bodies. The authority presents its
// X.509-SVID; Attest is the one call made without a client certificate
// (the agent has none yet: it proves itself with a projected service
// account token); every other call needs the agent's X.509-SVID, and the
// authority answers only for what runs on that agent's node.
//
// The package holds types and names only, so that both sides share them
// and neither imports the other.
package agentapi

import "time"

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

// JWTSVIDRequest asks for a JWT-SVID of a workload of the agent's node.
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
