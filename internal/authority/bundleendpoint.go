package authority

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"kzero.dev/kzero/internal/ca"
)

// Bundle endpoint defaults.
const (
	// DefaultBundleAddr is where the SPIFFE bundle endpoint listens.
	DefaultBundleAddr = ":8444"
	// BundlePath is the one path the bundle endpoint serves the bundle at.
	BundlePath = "/"
	// DefaultBundleServiceAccount is the service account the authority runs
	// as; the bundle endpoint's default SPIFFE ID is that service
	// account's.
	DefaultBundleServiceAccount = "kzero-authority"
)

// defaultBundleEndpointID is the SPIFFE ID the bundle endpoint presents
// when none is configured: the authority's own, that of its service
// account, spiffe://<td>/ns/<namespace>/sa/kzero-authority. The signer
// issues it only to a pod that runs as that service account in an enrolled
// namespace, and such a pod can read the CA's Secret anyway: the ID gives
// no one more than they have.
func defaultBundleEndpointID(td spiffeid.TrustDomain, namespace string) (spiffeid.ID, error) {
	return spiffeid.FromSegments(td, "ns", namespace, "sa", DefaultBundleServiceAccount)
}

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

	mu      sync.Mutex
	svid    *x509svid.SVID // guarded by mu
	renew   time.Time      // guarded by mu
	failing bool           // guarded by mu: the last issuance failed and was logged
}

// Compile-time checks: *ca.CA is what the endpoint needs, and the adapters
// are what go-spiffe takes.
var (
	_ BundleCA            = (*ca.CA)(nil)
	_ http.Handler        = (*BundleEndpoint)(nil)
	_ x509svid.Source     = svidSource(nil)
	_ spiffebundle.Source = caBundleSource(nil)
)

// errNoCA is what the endpoint's SVID source answers while no CA is loaded.
var errNoCA = errors.New("authority: bundle endpoint: the CA is not loaded yet, so there is no X.509-SVID to serve with (is the leader up, and the CA's Secret readable?)")

// NewBundleEndpoint checks cfg; it listens only in Run.
func NewBundleEndpoint(cfg BundleEndpointConfig) (*BundleEndpoint, error) {
	var errs []error
	if cfg.TrustDomain.IsZero() {
		errs = append(errs, errors.New("trustDomain: required"))
	}
	switch {
	case cfg.ID.IsZero() && cfg.Namespace == "":
		errs = append(errs, errors.New("id: required, or namespace for the default"))
	case cfg.ID.IsZero() && !cfg.TrustDomain.IsZero():
		id, err := defaultBundleEndpointID(cfg.TrustDomain, cfg.Namespace)
		if err != nil {
			errs = append(errs, fmt.Errorf("namespace: %q does not make the default ID: %w", cfg.Namespace, err))
		}
		cfg.ID = id
	case cfg.ID.IsZero():
	case cfg.ID.Path() == "":
		errs = append(errs, fmt.Errorf("id: %s has no path: name the endpoint, such as %s/ns/<namespace>/sa/%s", cfg.ID, cfg.ID, DefaultBundleServiceAccount))
	case !cfg.TrustDomain.IsZero() && !cfg.ID.MemberOf(cfg.TrustDomain):
		errs = append(errs, fmt.Errorf("id: %s is not in trust domain %s: the CA issues SVIDs only in its own", cfg.ID, cfg.TrustDomain))
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
	return &BundleEndpoint{cfg: cfg, handler: h}, nil
}

// ID is the SPIFFE ID the endpoint presents: peers configure it.
func (e *BundleEndpoint) ID() spiffeid.ID { return e.cfg.ID }

// Run serves until ctx ends, then stops accepting, gives the requests in
// flight five seconds, and returns ctx.Err(); it returns early only if it
// cannot listen or serve.
func (e *BundleEndpoint) Run(ctx context.Context) error {
	ln := e.cfg.Listener
	if ln == nil {
		var err error
		if ln, err = (&net.ListenConfig{}).Listen(ctx, "tcp", e.cfg.Addr); err != nil {
			return fmt.Errorf("authority: bundle endpoint: %w", err)
		}
	}
	tc := tlsconfig.TLSServerConfig(svidSource(e.x509SVID))
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

// x509SVID returns the endpoint's X.509-SVID, renewing it from half its
// life on; while renewal fails, the current one serves until it expires.
// The first failure of a run of them is logged as an error, the rest at
// debug level: anyone who can reach the endpoint can make a handshake.
func (e *BundleEndpoint) x509SVID() (*x509svid.SVID, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.cfg.Now()
	if e.svid != nil && now.Before(e.renew) {
		return e.svid, nil
	}
	s, err := e.issue()
	if err != nil {
		valid := e.svid != nil && now.Before(e.svid.Certificates[0].NotAfter)
		level := slog.LevelError
		switch {
		case e.failing:
			level = slog.LevelDebug
		case valid:
			level = slog.LevelWarn
		}
		e.failing = true
		if valid {
			e.cfg.Log.Log(context.Background(), level, "renewing the bundle endpoint's X.509-SVID failed; serving the current one",
				"error", err, "notAfter", e.svid.Certificates[0].NotAfter)
			return e.svid, nil
		}
		e.cfg.Log.Log(context.Background(), level, "no X.509-SVID for the bundle endpoint: its TLS handshakes fail", "error", err)
		return nil, err
	}
	e.failing = false
	leaf := s.Certificates[0]
	e.svid = s
	e.renew = leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) / 2)
	e.cfg.Log.Info("issued the bundle endpoint's X.509-SVID", "endpointID", s.ID.String(), "notAfter", leaf.NotAfter, "renewAt", e.renew)
	return s, nil
}

// issue makes a key, and has the CA certify it for the endpoint's ID.
func (e *BundleEndpoint) issue() (*x509svid.SVID, error) {
	c := e.cfg.CA()
	if c == nil {
		return nil, errNoCA
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("authority: bundle endpoint key: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{e.cfg.ID.URL()}}, key)
	if err != nil {
		return nil, fmt.Errorf("authority: bundle endpoint CSR: %w", err)
	}
	s, err := c.IssueX509SVID(ca.X509Request{ID: e.cfg.ID, CSR: csr, TTL: e.cfg.Lifetime})
	if err != nil {
		return nil, fmt.Errorf("authority: bundle endpoint X.509-SVID for %s: %w", e.cfg.ID, err)
	}
	return &x509svid.SVID{ID: s.ID, Certificates: s.Certificates, PrivateKey: key}, nil
}

// svidSource adapts a function to x509svid.Source, so that the endpoint's
// SVID, private key included, is not part of its exported API.
type svidSource func() (*x509svid.SVID, error)

func (f svidSource) GetX509SVID() (*x509svid.SVID, error) { return f() }

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
