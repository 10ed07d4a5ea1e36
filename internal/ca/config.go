package ca

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// KeyAlgorithm is the kind of key the CA makes for its own certificates
// and JWT signing keys.
type KeyAlgorithm string

// Key algorithms for the CA's own keys.
const (
	ECDSAP256 KeyAlgorithm = "ECDSAP256"
	ECDSAP384 KeyAlgorithm = "ECDSAP384"
)

// Defaults. Leaves are short-lived, CAs rotate with a day of overlap.
const (
	DefaultRootTTL           = 365 * 24 * time.Hour
	DefaultRootPublishLead   = 30 * 24 * time.Hour
	DefaultIssuerTTL         = 7 * 24 * time.Hour
	DefaultPublishLead       = 24 * time.Hour
	DefaultX509SVIDTTL       = time.Hour
	DefaultX509SVIDMaxTTL    = 24 * time.Hour
	DefaultJWTKeyTTL         = 7 * 24 * time.Hour
	DefaultJWTSVIDTTL        = 5 * time.Minute
	DefaultJWTSVIDMaxTTL     = time.Hour
	DefaultRefreshHint       = 5 * time.Minute
	DefaultBackdate          = 30 * time.Second
	DefaultKeyAlgorithm      = ECDSAP256
	minRefreshHint           = time.Second
	minimumLeafTTLAfterClamp = time.Second
)

// Config configures a CA. The zero value of every duration means its
// default; New checks the schedule is coherent.
type Config struct {
	// TrustDomain is the trust domain the CA speaks for. Required.
	TrustDomain spiffeid.TrustDomain
	// Store holds the CA's state. Required.
	Store Store

	// KeyAlgorithm for the CA's own keys; ECDSAP256 by default.
	KeyAlgorithm KeyAlgorithm

	// RootTTL is the lifetime of a root CA.
	RootTTL time.Duration
	// RootPublishLead is how long a new root is in the bundle before any
	// issuing CA under it signs.
	RootPublishLead time.Duration
	// IssuerTTL is the lifetime of an issuing (intermediate) CA.
	IssuerTTL time.Duration
	// PublishLead is how long a new issuing CA or JWT key is in the bundle
	// before it signs. It must cover the time peers take to refresh their
	// bundle (RefreshHint) with room to spare.
	PublishLead time.Duration
	// X509SVIDTTL is the lifetime of an X.509-SVID when the request names
	// none; X509SVIDMaxTTL is the longest a request may ask for.
	X509SVIDTTL, X509SVIDMaxTTL time.Duration
	// JWTKeyTTL is the lifetime of a JWT-SVID signing key.
	JWTKeyTTL time.Duration
	// JWTSVIDTTL and JWTSVIDMaxTTL: default and longest JWT-SVID lifetime.
	JWTSVIDTTL, JWTSVIDMaxTTL time.Duration
	// RefreshHint is published in the bundle: how often consumers should
	// fetch it again.
	RefreshHint time.Duration
	// Backdate moves certificates' NotBefore into the past to absorb clock
	// skew between peers.
	Backdate time.Duration

	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Rand is the source of serial numbers and key IDs; nil means
	// crypto/rand.Reader.
	Rand io.Reader
}

// withDefaults returns a copy of c with every zero field set to its default.
func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.RootTTL, DefaultRootTTL)
	def(&c.RootPublishLead, DefaultRootPublishLead)
	def(&c.IssuerTTL, DefaultIssuerTTL)
	def(&c.PublishLead, DefaultPublishLead)
	def(&c.X509SVIDTTL, DefaultX509SVIDTTL)
	def(&c.X509SVIDMaxTTL, DefaultX509SVIDMaxTTL)
	def(&c.JWTKeyTTL, DefaultJWTKeyTTL)
	def(&c.JWTSVIDTTL, DefaultJWTSVIDTTL)
	def(&c.JWTSVIDMaxTTL, DefaultJWTSVIDMaxTTL)
	def(&c.RefreshHint, DefaultRefreshHint)
	def(&c.Backdate, DefaultBackdate)
	if c.KeyAlgorithm == "" {
		c.KeyAlgorithm = DefaultKeyAlgorithm
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// validate checks a defaulted Config. Every problem is reported with the
// field it concerns, so a person can fix them all at once.
func (c Config) validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if c.TrustDomain.IsZero() {
		bad("trustDomain", "required")
	}
	if c.Store == nil {
		bad("store", "required")
	}
	switch c.KeyAlgorithm {
	case ECDSAP256, ECDSAP384:
	default:
		bad("keyAlgorithm", "%q is not one of %s, %s", c.KeyAlgorithm, ECDSAP256, ECDSAP384)
	}
	for _, d := range []struct {
		field string
		v     time.Duration
	}{
		{"rootTTL", c.RootTTL}, {"rootPublishLead", c.RootPublishLead},
		{"issuerTTL", c.IssuerTTL}, {"publishLead", c.PublishLead},
		{"x509SVIDTTL", c.X509SVIDTTL}, {"x509SVIDMaxTTL", c.X509SVIDMaxTTL},
		{"jwtKeyTTL", c.JWTKeyTTL}, {"jwtSVIDTTL", c.JWTSVIDTTL},
		{"jwtSVIDMaxTTL", c.JWTSVIDMaxTTL}, {"refreshHint", c.RefreshHint},
		{"backdate", c.Backdate},
	} {
		if d.v < 0 {
			bad(d.field, "must not be negative, got %s", d.v)
		}
	}
	if c.X509SVIDTTL > c.X509SVIDMaxTTL {
		bad("x509SVIDTTL", "%s is over x509SVIDMaxTTL %s", c.X509SVIDTTL, c.X509SVIDMaxTTL)
	}
	if c.JWTSVIDTTL > c.JWTSVIDMaxTTL {
		bad("jwtSVIDTTL", "%s is over jwtSVIDMaxTTL %s", c.JWTSVIDTTL, c.JWTSVIDMaxTTL)
	}
	if c.RefreshHint < minRefreshHint {
		bad("refreshHint", "must be at least %s, got %s", minRefreshHint, c.RefreshHint)
	}
	if c.PublishLead < c.RefreshHint {
		bad("publishLead", "%s is shorter than refreshHint %s: peers would not see a new CA before it signs", c.PublishLead, c.RefreshHint)
	}
	if c.RootPublishLead < c.RefreshHint {
		bad("rootPublishLead", "%s is shorter than refreshHint %s: peers would not see a new root before it signs", c.RootPublishLead, c.RefreshHint)
	}
	// Each CA must be able to sign its longest child for a while after
	// its successor's publish lead: ttl > lead + longest child.
	if c.IssuerTTL <= c.PublishLead+c.X509SVIDMaxTTL {
		bad("issuerTTL", "%s leaves no signing time: it must exceed publishLead + x509SVIDMaxTTL = %s", c.IssuerTTL, c.PublishLead+c.X509SVIDMaxTTL)
	}
	if c.JWTKeyTTL <= c.PublishLead+c.JWTSVIDMaxTTL {
		bad("jwtKeyTTL", "%s leaves no signing time: it must exceed publishLead + jwtSVIDMaxTTL = %s", c.JWTKeyTTL, c.PublishLead+c.JWTSVIDMaxTTL)
	}
	if c.RootTTL <= c.RootPublishLead+c.IssuerTTL {
		bad("rootTTL", "%s leaves no signing time: it must exceed rootPublishLead + issuerTTL = %s", c.RootTTL, c.RootPublishLead+c.IssuerTTL)
	}
	if len(errs) > 0 {
		return fmt.Errorf("ca: invalid config: %w", errors.Join(errs...))
	}
	return nil
}
