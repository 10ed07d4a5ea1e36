package agent

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"kzero.dev/kzero/internal/agentapi"
	"kzero.dev/kzero/internal/workloadapi"
)

// Timing of the client.
const (
	// DefaultBundleRefresh is how often the bundle is fetched from the
	// authority, besides right after every attestation.
	DefaultBundleRefresh = 30 * time.Second
	// MinBackoff and MaxBackoff bound the wait between failed
	// attestations: it starts at MinBackoff and doubles up to MaxBackoff.
	MinBackoff = time.Second
	MaxBackoff = time.Minute
	// callTimeout bounds one call to the authority.
	callTimeout = 15 * time.Second
	// maxAnswer bounds the body of an answer: the largest, the bundle, is
	// a few KB.
	maxAnswer = 1 << 20
	// maxTokenFile bounds the token file: a projected service account
	// token is about 1 KB, and the authority takes requests of 64 KiB.
	maxTokenFile = 64 << 10
	// maxBundleFile bounds the bundle file: the ClusterTrustBundle
	// kubelet projects, which the API server keeps under 1 MiB.
	maxBundleFile = 2 << 20
)

// ClientConfig configures a Client. Fields marked required are checked by
// NewClient.
type ClientConfig struct {
	// URL of the authority's agent API, https://host:port. Required.
	URL string
	// TrustDomain of the authority and of the agent. Required.
	TrustDomain spiffeid.TrustDomain
	// NodeName is the agent's node: its SVID is
	// spiffe://<TrustDomain>/kzero/agent/<NodeName>. Required.
	NodeName string
	// AuthorityID is the SPIFFE ID the authority must present, in
	// TrustDomain. Required.
	AuthorityID spiffeid.ID
	// BundleFile holds the trust domain's X.509 authorities (PEM), the
	// ClusterTrustBundle kubelet projects; it is read again for every new
	// connection, as kubelet updates it. Required.
	BundleFile string
	// Authorities, when set, gives more X.509 authorities of the trust
	// domain to verify the authority with: the agent reads its
	// ClusterTrustBundle from the API server too, since kubelet may take
	// minutes to refresh BundleFile after the bundle changed.
	Authorities func() []*x509.Certificate
	// TokenFile holds the projected service account token of audience
	// agentapi.TokenAudience; it is read again for every attestation, as
	// kubelet rotates it. Required.
	TokenFile string
	// Bundles receives the trust domain's bundle fetched from the
	// authority. Required.
	Bundles *workloadapi.Bundles
	// Log receives operational messages; never keys or tokens. Required.
	Log *slog.Logger

	// BundleRefresh is how often the bundle is fetched; zero means
	// DefaultBundleRefresh.
	BundleRefresh time.Duration
	// Now returns the current time, for the agent's SVID's renewal and
	// expiry; nil means time.Now. (The authority's certificate is checked
	// against the system clock, by go-spiffe.)
	Now func() time.Time
	// After returns a channel that receives after d, like time.After; nil
	// means time.After. Run waits on it, so a test's clock drives it.
	After func(d time.Duration) <-chan time.Time
}

// Client is the agent's side of the agent API: it attests, keeps the
// agent's X.509-SVID fresh, keeps Bundles up to date, and asks for the
// SVIDs of the node's workloads (it is their workloadapi.Signer). Create
// it with NewClient and call Run once; the other methods are safe for
// concurrent use, with Run and with each other.
type Client struct {
	cfg  ClientConfig
	id   spiffeid.ID // the agent's
	base *url.URL

	// tls calls without a client certificate (attestation); mtls with the
	// agent's SVID. Their transports are closed to new SVIDs' advantage.
	tls, mtls *http.Client
	mtlsTrans *http.Transport

	// wake tells Run that the authority refused the agent's SVID.
	wake    chan struct{}
	running atomic.Bool

	mu      sync.Mutex
	svid    *x509svid.SVID     // guarded by mu: nil until attested
	renew   time.Time          // guarded by mu: when svid is renewed
	fetched *x509bundle.Bundle // guarded by mu: X.509 authorities of the last bundle fetched
	stale   bool               // guarded by mu: the authority refused svid: attest again now
}

var (
	_ workloadapi.Signer = (*Client)(nil)
	_ x509bundle.Source  = bundleSource{}
	_ x509svid.Source    = svidSource{}
)

// ErrWrongAuthority is in the error of a call whose server presented an
// X.509-SVID that verifies but names another SPIFFE ID than the
// authority's.
var ErrWrongAuthority = errors.New("agent: the server is not the authority")

// NewClient checks cfg and applies its defaults; it makes no request
// until Run or Attest.
func NewClient(cfg ClientConfig) (*Client, error) {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	base, err := url.Parse(cfg.URL)
	switch {
	case cfg.URL == "":
		bad("url", "required")
	case err != nil:
		bad("url", "%q: %v", cfg.URL, err)
	case base.Scheme != "https" || base.Host == "" || (base.Path != "" && base.Path != "/") || base.RawQuery != "" || base.User != nil:
		bad("url", "%q: want https://host:port and nothing more", cfg.URL)
	}
	if cfg.TrustDomain.IsZero() {
		bad("trustDomain", "required")
	}
	var id spiffeid.ID
	switch {
	case cfg.NodeName == "":
		bad("nodeName", "required")
	case strings.Contains(cfg.NodeName, "/"):
		bad("nodeName", "%q is not a node name: it has a slash", cfg.NodeName)
	case !cfg.TrustDomain.IsZero():
		if id, err = spiffeid.FromPath(cfg.TrustDomain, agentapi.AgentPathPrefix+cfg.NodeName); err != nil {
			bad("nodeName", "%q makes no SPIFFE ID: %v", cfg.NodeName, err)
		}
	}
	switch {
	case cfg.AuthorityID.IsZero():
		bad("authorityID", "required")
	case !cfg.TrustDomain.IsZero() && !cfg.AuthorityID.MemberOf(cfg.TrustDomain):
		bad("authorityID", "%s is not in trust domain %s", cfg.AuthorityID, cfg.TrustDomain.Name())
	}
	if cfg.BundleFile == "" {
		bad("bundleFile", "required")
	}
	if cfg.TokenFile == "" {
		bad("tokenFile", "required")
	}
	if cfg.Bundles == nil {
		bad("bundles", "required")
	}
	if cfg.Log == nil {
		bad("log", "required")
	}
	if cfg.BundleRefresh < 0 {
		bad("bundleRefresh", "must not be negative, got %s", cfg.BundleRefresh)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("agent: invalid client config: %w", errors.Join(errs...))
	}
	if cfg.BundleRefresh == 0 {
		cfg.BundleRefresh = DefaultBundleRefresh
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.After == nil {
		cfg.After = time.After
	}
	base.Path = ""
	c := &Client{cfg: cfg, id: id, base: base, wake: make(chan struct{}, 1)}
	authorize := c.authorizer()
	c.tls, _ = newHTTPClient(tlsconfig.TLSClientConfig(bundleSource{c}, authorize))
	c.mtls, c.mtlsTrans = newHTTPClient(tlsconfig.MTLSClientConfig(svidSource{c}, bundleSource{c}, authorize))
	return c, nil
}

// newHTTPClient calls over tc, TLS 1.3 only (agent and authority are both
// kzero), with no proxy: the authority is in the cluster.
func newHTTPClient(tc *tls.Config) (*http.Client, *http.Transport) {
	tc.MinVersion = tls.VersionTLS13
	t := &http.Transport{
		TLSClientConfig:     tc,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		TLSHandshakeTimeout: 10 * time.Second,
		// A connection is reused for a while: every new one reads the
		// bundle file again (VerifyPeerCertificate).
		IdleConnTimeout:     30 * time.Second,
		MaxIdleConnsPerHost: 4,
	}
	return &http.Client{Transport: t, Timeout: callTimeout}, t
}

// authorizer accepts the authority's SPIFFE ID only (go-spiffe's
// AuthorizeID), saying what to check when it is another.
func (c *Client) authorizer() tlsconfig.Authorizer {
	want := tlsconfig.AuthorizeID(c.cfg.AuthorityID)
	return func(id spiffeid.ID, chains [][]*x509.Certificate) error {
		if err := want(id, chains); err != nil {
			return fmt.Errorf("%w: it presents %s, not %s: check the authority's URL and SPIFFE ID", ErrWrongAuthority, id, c.cfg.AuthorityID)
		}
		return nil
	}
}

// ID returns the agent's SPIFFE ID, spiffe://<td>/kzero/agent/<node>.
func (c *Client) ID() spiffeid.ID { return c.id }

// Chain returns the certificates of the agent's X.509-SVID, leaf first,
// or nil before the first attestation. It may have expired: see its
// leaf's NotAfter. The caller must not modify them.
func (c *Client) Chain() []*x509.Certificate {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.svid == nil {
		return nil
	}
	return append([]*x509.Certificate(nil), c.svid.Certificates...)
}
