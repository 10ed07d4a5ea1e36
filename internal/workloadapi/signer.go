package workloadapi

import (
	"context"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Signer is what the agent asks the authority for. The server has already
// attested the caller, so id is one the caller may have; the authority
// decides again whether this agent may ask for it. Both methods are called
// concurrently, under a context with Config.SignTimeout.
type Signer interface {
	// SignX509SVID certifies the key of csrDER (a PKCS#10 request, DER,
	// naming id as its one URI SAN) as an X.509-SVID for id. It returns
	// the chain, DER, leaf first, then the intermediates up to a root of
	// the trust domain's bundle (not the root itself).
	SignX509SVID(ctx context.Context, id spiffeid.ID, csrDER []byte) ([][]byte, error)
	// SignJWTSVID returns a JWT-SVID for id and audience, in JWS compact
	// serialization.
	SignJWTSVID(ctx context.Context, id spiffeid.ID, audience []string) (string, error)
}
