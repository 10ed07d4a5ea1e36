package authority

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"kzero.dev/kzero/internal/ca"
)

// Bundle endpoint defaults.
const (
	// DefaultBundleAddr is where the SPIFFE bundle endpoint listens.
	DefaultBundleAddr = ":8444"
	// BundlePath is the one path the bundle endpoint serves the bundle at.
	BundlePath = "/"
)

// BundleCA is what the bundle endpoint needs of the CA: the bundle to serve
// and an X.509-SVID to serve it with. *ca.CA is one.
type BundleCA interface {
	Bundle() *spiffebundle.Bundle
	IssueX509SVID(ca.X509Request) (*ca.X509SVID, error)
}

// BundleEndpointConfig configures a BundleEndpoint.
type BundleEndpointConfig struct {
	// Listener to serve on; nil means listen on Addr.
	Listener net.Listener
	// Addr is the TCP address to listen on when Listener is nil; empty
	// means DefaultBundleAddr.
	Addr string
	// TrustDomain whose bundle is served. Required.
	TrustDomain spiffeid.TrustDomain
	// ID is the SPIFFE ID of the endpoint's X.509-SVID, the one federating
	// peers are configured with. It must be in TrustDomain and have a path.
	// Zero means spiffe://<TrustDomain>/ns/<Namespace>/sa/kzero-authority,
	// the authority's own ID (DefaultBundleServiceAccount).
	ID spiffeid.ID
	// Namespace the authority runs in, for the default ID; required when
	// ID is zero.
	Namespace string
	// CA returns the CA whose bundle is served and which issues the
	// endpoint's X.509-SVID, or nil while none is loaded: then no TLS
	// handshake succeeds until an SVID has been issued, and requests on a
	// connection made with one get 503. Return an untyped nil, not a nil
	// *ca.CA. It is called on every request. Required.
	CA func() BundleCA
	// Log receives operational messages; never key material. Required.
	Log *slog.Logger
	// Lifetime of the endpoint's X.509-SVID; zero means the CA's default
	// X.509-SVID lifetime. It is renewed at half life.
	Lifetime time.Duration
	// Now returns the current time, for renewal; nil means time.Now.
	Now func() time.Time
}

// BundleEndpoint serves the trust domain's SPIFFE bundle, as the SPIFFE
// Federation standard asks, to peer trust domains that federate with it:
// a JWKS document (spiffe_sequence, spiffe_refresh_hint, the X.509
// authorities and JWT keys) for GET BundlePath, over HTTPS with the
// https_spiffe profile, that is, with an X.509-SVID for ID that the CA
// issues and the endpoint renews at half life. It asks for no client
// certificate. It is stateless: every replica serves it, leader or not.
// Create it with NewBundleEndpoint and call Run once; ServeHTTP is safe
// for concurrent use.
type BundleEndpoint struct {
	cfg     BundleEndpointConfig
	handler http.Handler
	svid    *ownSVID
}

// Compile-time checks: *ca.CA is what the endpoint needs, and the adapters
// are what go-spiffe takes.
var (
	_ BundleCA            = (*ca.CA)(nil)
	_ http.Handler        = (*BundleEndpoint)(nil)
	_ spiffebundle.Source = caBundleSource(nil)
)

// NewBundleEndpoint checks cfg; it listens only in Run.
func NewBundleEndpoint(cfg BundleEndpointConfig) (*BundleEndpoint, error) {
	var errs []error
	if cfg.TrustDomain.IsZero() {
		errs = append(errs, errors.New("trustDomain: required"))
	}
	if cfg.ID.IsZero() && cfg.Namespace == "" {
		errs = append(errs, errors.New("id: required, or namespace for the default"))
	} else if id, err := serverID(cfg.TrustDomain, cfg.Namespace, cfg.ID, "endpoint"); err != nil {
		errs = append(errs, err)
	} else {
		cfg.ID = id
	}
	if cfg.CA == nil {
		errs = append(errs, errors.New("ca: required"))
	}
	if cfg.Log == nil {
		errs = append(errs, errors.New("log: required"))
	}
	if cfg.Lifetime < 0 {
		errs = append(errs, fmt.Errorf("lifetime: %s is negative: give a positive lifetime, or zero for the CA's default", cfg.Lifetime))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("authority: invalid bundle endpoint config: %w", errors.Join(errs...))
	}
	if cfg.Addr == "" {
		cfg.Addr = DefaultBundleAddr
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	h, err := federation.NewHandler(cfg.TrustDomain, caBundleSource(cfg.CA), federation.WithLogger(spiffeLogger{cfg.Log}))
	if err != nil {
		return nil, fmt.Errorf("authority: bundle endpoint: %w", err)
	}
	return &BundleEndpoint{cfg: cfg, handler: h, svid: &ownSVID{
		id: cfg.ID, issuer: issuerOf(cfg.CA), lifetime: cfg.Lifetime, now: cfg.Now, log: cfg.Log, what: "bundle endpoint",
	}}, nil
}

// ID is the SPIFFE ID the endpoint presents: peers configure it.
func (e *BundleEndpoint) ID() spiffeid.ID { return e.cfg.ID }

// Run serves until ctx ends, then stops accepting, gives the requests in
// flight five seconds, and returns ctx.Err(); it returns early only if it
// cannot listen or serve.
func (e *BundleEndpoint) Run(ctx context.Context) error {
	ln, err := listen(ctx, e.cfg.Listener, e.cfg.Addr, "bundle endpoint")
	if err != nil {
		return err
	}
	tc := tlsconfig.TLSServerConfig(e.svid)
	tc.CipherSuites = tlsCipherSuites
	srv := &http.Server{
		Handler:           e,
		TLSConfig:         tc,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(e.cfg.Log.Handler(), slog.LevelInfo),
	}
	e.cfg.Log.Info("serving the SPIFFE bundle endpoint", "addr", ln.Addr().String(), "path", BundlePath,
		"profile", "https_spiffe", "trustDomain", e.cfg.TrustDomain.Name(), "endpointID", e.cfg.ID.String())
	return serveTLS(ctx, srv, ln, e.cfg.Log, "bundle endpoint")
}

// tlsCipherSuites are the TLS 1.2 suites of Mozilla's intermediate
// configuration, which the SPIFFE Federation standard requires, that an
// ECDSA key (the endpoint's) can use; every TLS 1.3 suite is in it.
var tlsCipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
}

// ServeHTTP answers GET BundlePath with the bundle (application/json),
// other methods with 405, other paths with 404, and 503 while no CA is
// loaded.
func (e *BundleEndpoint) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	if req.URL.Path != BundlePath {
		http.Error(rw, "not found: the SPIFFE bundle is served at "+BundlePath, http.StatusNotFound)
		return
	}
	if req.Method != http.MethodGet {
		rw.Header().Set("Allow", http.MethodGet)
		http.Error(rw, "method not allowed: the SPIFFE bundle endpoint answers GET only", http.StatusMethodNotAllowed)
		return
	}
	if e.cfg.CA() == nil {
		rw.Header().Set("Retry-After", "30")
		http.Error(rw, "service unavailable: this authority replica has not loaded the CA yet; try again shortly", http.StatusServiceUnavailable)
		return
	}
	e.handler.ServeHTTP(rw, req)
}

// issuerOf adapts a function that returns the CA to one that returns its
// issuer, nil while the CA is.
func issuerOf[C x509Issuer](get func() C) func() x509Issuer {
	return func() x509Issuer {
		c := get()
		if any(c) == nil {
			return nil
		}
		return c
	}
}

// caBundleSource adapts BundleEndpointConfig.CA to spiffebundle.Source, for
// federation.NewHandler.
type caBundleSource func() BundleCA

func (f caBundleSource) GetBundleForTrustDomain(td spiffeid.TrustDomain) (*spiffebundle.Bundle, error) {
	c := f()
	if c == nil {
		return nil, errNoCA
	}
	return c.Bundle().GetBundleForTrustDomain(td)
}

// spiffeLogger is go-spiffe's logger.Logger over slog.
type spiffeLogger struct{ log *slog.Logger }

func (l spiffeLogger) Debugf(format string, args ...any) { l.log.Debug(fmt.Sprintf(format, args...)) }
func (l spiffeLogger) Infof(format string, args ...any)  { l.log.Info(fmt.Sprintf(format, args...)) }
func (l spiffeLogger) Warnf(format string, args ...any)  { l.log.Warn(fmt.Sprintf(format, args...)) }
func (l spiffeLogger) Errorf(format string, args ...any) { l.log.Error(fmt.Sprintf(format, args...)) }
