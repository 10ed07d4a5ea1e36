package ca

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"kzero.dev/kzero/internal/agentapi"
)

// JWTRequest asks for a JWT-SVID.
type JWTRequest struct {
	// ID is the SPIFFE ID to assert; in the CA's trust domain, with a path.
	ID spiffeid.ID
	// Audience lists who may accept the token: at least one, at most
	// agentapi.MaxAudiences, each at most agentapi.MaxAudienceBytes long.
	Audience []string
	// TTL is the lifetime asked for; zero means the configured default.
	TTL time.Duration
}

// JWTSVID is an issued JWT-SVID.
type JWTSVID struct {
	// Token is the compact JWS.
	Token string
	// ID is the SPIFFE ID in its sub claim.
	ID spiffeid.ID
	// Audience is its aud claim.
	Audience []string
	// KeyID names the JWT key that signed it (the kid header).
	KeyID string
	// IssuedAt and Expiry are its iat and exp claims.
	IssuedAt, Expiry time.Time
}

// jwtAlgorithms are the algorithms of the JWT-SVID standard this CA
// accepts when validating: the ECDSA and RSA ones, never "none" or HMAC.
var jwtAlgorithms = []jose.SignatureAlgorithm{
	jose.ES256, jose.ES384, jose.ES512,
	jose.RS256, jose.RS384, jose.RS512,
	jose.PS256, jose.PS384, jose.PS512,
}

// IssueJWTSVID signs a JWT-SVID per the SPIFFE JWT-SVID standard: header
// alg (ES256 with the default key algorithm), kid and typ JWT; claims sub,
// aud, exp and iat. It never outlives the key that signs it. An audience
// over agentapi's limits is refused with ErrAudienceLimit.
func (c *CA) IssueJWTSVID(req JWTRequest) (*JWTSVID, error) {
	if err := c.checkID(req.ID); err != nil {
		return nil, err
	}
	if len(req.Audience) == 0 || slices.Contains(req.Audience, "") {
		return nil, refuse(ErrNoAudience, "a JWT-SVID needs at least one non-empty audience: name the service that will accept it")
	}
	if msg := agentapi.AudienceProblem(req.Audience); msg != "" {
		return nil, refuse(ErrAudienceLimit, "%s", msg)
	}
	ttl, err := checkTTL(req.TTL, c.cfg.JWTSVIDTTL, c.cfg.JWTSVIDMaxTTL)
	if err != nil {
		return nil, err
	}
	now := c.cfg.Now()
	key := c.snap.Load().activeJWTKey(now)
	if key == nil {
		return nil, refuse(ErrNoAuthority, "no JWT key is valid at %s: the CA must rotate (is its clock right?)", now.Format(time.RFC3339))
	}
	// A token is accepted up to jwt.DefaultLeeway after exp; it must not
	// outlive its key's place in the bundle by that much.
	exp := now.Add(ttl)
	if limit := key.NotAfter.Add(-jwt.DefaultLeeway); exp.After(limit) {
		exp = limit
	}
	if exp.Sub(now) < minimumLeafTTLAfterClamp {
		return nil, refuse(ErrNoAuthority, "the JWT key expires at %s, too soon to sign: the CA must rotate", key.NotAfter.Format(time.RFC3339))
	}
	alg, err := algorithmOf(key.signer.Public())
	if err != nil {
		return nil, fmt.Errorf("ca: JWT key %s: %w", key.ID, err)
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key.signer, KeyID: key.ID}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, fmt.Errorf("ca: JWT signer: %w", err)
	}
	claims := jwtSVIDClaims{
		Subject:  req.ID.String(),
		Audience: req.Audience,
		Expiry:   jwt.NewNumericDate(exp),
		IssuedAt: jwt.NewNumericDate(now),
	}
	token, err := jwt.Signed(sig).Claims(claims).Serialize()
	if err != nil {
		return nil, fmt.Errorf("ca: sign JWT-SVID for %s: %w", req.ID, err)
	}
	return &JWTSVID{
		Token: token, ID: req.ID, Audience: slices.Clone(req.Audience), KeyID: key.ID,
		IssuedAt: claims.IssuedAt.Time(), Expiry: claims.Expiry.Time(),
	}, nil
}

// jwtSVIDClaims are the claims IssueJWTSVID signs. aud is always a JSON
// array, as SPIRE sends it: go-jose's jwt.Audience writes a single
// audience as a string, which RFC 7519 allows but clients that expect an
// array fail on.
type jwtSVIDClaims struct {
	Subject  string           `json:"sub"`
	Audience []string         `json:"aud"`
	Expiry   *jwt.NumericDate `json:"exp"`
	IssuedAt *jwt.NumericDate `json:"iat"`
}

// maxJWTSVIDBytes bounds a token ValidateJWTSVID parses: a JWT-SVID this
// CA signs is well under 4 KiB, even with the most audiences the agent API
// takes; go-jose would otherwise parse any header (an x5c of any size).
const maxJWTSVIDBytes = 64 << 10

// Validation errors of ValidateJWTSVID.
var (
	// ErrJWTInvalid: the token is not a well-formed JWT-SVID or its
	// signature does not verify with a published key.
	ErrJWTInvalid = errors.New("ca: invalid JWT-SVID")
	// ErrJWTExpired: the token's exp has passed.
	ErrJWTExpired = errors.New("ca: JWT-SVID expired")
	// ErrJWTAudience: the token is not for the audience asked.
	ErrJWTAudience = errors.New("ca: JWT-SVID audience mismatch")
)

// ValidateJWTSVID checks a JWT-SVID of this trust domain against the
// current bundle and the CA's clock: the signature with the key its kid
// names, the SPIFFE ID in sub, exp, and that aud contains audience. aud
// may be an array or, for a single audience, a string (RFC 7519).
func (c *CA) ValidateJWTSVID(token, audience string) (*JWTSVID, error) {
	if audience == "" {
		return nil, refuse(ErrNoAudience, "validation needs the audience to expect")
	}
	if len(token) > maxJWTSVIDBytes {
		return nil, refuse(ErrJWTInvalid, "the token is %d bytes, over the %d a JWT-SVID may be: it was not parsed", len(token), maxJWTSVIDBytes)
	}
	tok, err := jwt.ParseSigned(token, jwtAlgorithms)
	if err != nil {
		return nil, refuse(ErrJWTInvalid, "the token does not parse as a signed JWT: %v", err)
	}
	h := tok.Headers[0]
	if typ, ok := h.ExtraHeaders[jose.HeaderType]; ok && typ != "JWT" && typ != "JOSE" {
		return nil, refuse(ErrJWTInvalid, "the token's typ header is %v; a JWT-SVID has JWT, JOSE or none", typ)
	}
	if h.KeyID == "" {
		return nil, refuse(ErrJWTInvalid, "the token has no kid header")
	}
	pub, ok := c.snap.Load().bundle.FindJWTAuthority(h.KeyID)
	if !ok {
		return nil, refuse(ErrJWTInvalid, "the token's key %q is not in the bundle of %q: it was signed by another CA, or long ago", h.KeyID, c.cfg.TrustDomain.Name())
	}
	var claims jwt.Claims
	if err := tok.Claims(pub, &claims); err != nil {
		return nil, refuse(ErrJWTInvalid, "the token's signature does not verify: %v", err)
	}
	id, err := spiffeid.FromString(claims.Subject)
	if err != nil {
		return nil, refuse(ErrJWTInvalid, "the token's sub %q is not a SPIFFE ID: %v", claims.Subject, err)
	}
	if err := c.checkID(id); err != nil {
		return nil, err
	}
	if claims.Expiry == nil {
		return nil, refuse(ErrJWTInvalid, "the token has no exp claim")
	}
	err = claims.ValidateWithLeeway(jwt.Expected{AnyAudience: jwt.Audience{audience}, Time: c.cfg.Now()}, jwt.DefaultLeeway)
	switch {
	case errors.Is(err, jwt.ErrExpired):
		return nil, refuse(ErrJWTExpired, "the token expired at %s: fetch a new one", claims.Expiry.Time().UTC().Format(time.RFC3339))
	case errors.Is(err, jwt.ErrInvalidAudience):
		return nil, refuse(ErrJWTAudience, "the token is for %q, not %q", []string(claims.Audience), audience)
	case err != nil:
		return nil, refuse(ErrJWTInvalid, "the token's claims do not validate: %v", err)
	}
	out := &JWTSVID{Token: token, ID: id, Audience: claims.Audience, KeyID: h.KeyID, Expiry: claims.Expiry.Time()}
	if claims.IssuedAt != nil {
		out.IssuedAt = claims.IssuedAt.Time()
	}
	return out, nil
}
