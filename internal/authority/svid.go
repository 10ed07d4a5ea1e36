package authority

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"kzero.dev/kzero/internal/ca"
)

// DefaultBundleServiceAccount is the service account the authority runs
// as. The authority's own SPIFFE ID, which the bundle endpoint and the
// agent API present by default, is that service account's.
const DefaultBundleServiceAccount = "kzero-authority"

// authorityID is the authority's own SPIFFE ID, that of its service
// account: spiffe://<td>/ns/<namespace>/sa/kzero-authority. The signer
// issues it only to a pod that runs as that service account in an enrolled
// namespace, and such a pod can read the CA's Secret anyway: the ID gives
// no one more than they have.
func authorityID(td spiffeid.TrustDomain, namespace string) (spiffeid.ID, error) {
	return spiffeid.FromSegments(td, "ns", namespace, "sa", DefaultBundleServiceAccount)
}

// serverID is the SPIFFE ID a server of the authority (what names it in
// errors) presents: id, checked, or when zero the authority's own in
// namespace. A zero td or namespace leaves the checks that need it to the
// caller, which reports them missing.
func serverID(td spiffeid.TrustDomain, namespace string, id spiffeid.ID, what string) (spiffeid.ID, error) {
	switch {
	case id.IsZero() && (td.IsZero() || namespace == ""):
		return id, nil
	case id.IsZero():
		d, err := authorityID(td, namespace)
		if err != nil {
			return id, fmt.Errorf("namespace: %q does not make the default ID: %w", namespace, err)
		}
		return d, nil
	case id.Path() == "":
		return id, fmt.Errorf("id: %s has no path: name the %s, such as %s/ns/<namespace>/sa/%s", id, what, id, DefaultBundleServiceAccount)
	case !td.IsZero() && !id.MemberOf(td):
		return id, fmt.Errorf("id: %s is not in trust domain %s: the CA issues SVIDs only in its own", id, td)
	}
	return id, nil
}

// x509Issuer issues X.509-SVIDs: *ca.CA.
type x509Issuer interface {
	IssueX509SVID(ca.X509Request) (*ca.X509SVID, error)
}

// errNoCA is what a server of the authority answers while no CA is loaded.
var errNoCA = errors.New("authority: the CA is not loaded yet, so there is no X.509-SVID to serve with and no bundle to verify with (is the leader up, and the CA's Secret readable?)")

// ownSVID is an X.509-SVID one of the authority's servers presents: a key
// made in memory (never written, never logged), certified by the CA for
// id, renewed from half its life on. It is an x509svid.Source, safe for
// concurrent use; unexported, so that the private key is part of no
// exported API.
type ownSVID struct {
	id     spiffeid.ID
	issuer func() x509Issuer // nil while no CA is loaded
	// lifetime asked of the CA; zero: its default.
	lifetime time.Duration
	now      func() time.Time
	log      *slog.Logger
	// what names the server in logs and errors: "bundle endpoint".
	what string
	// without says what fails while there is no SVID; empty: its TLS
	// handshakes.
	without string

	mu      sync.Mutex
	svid    *x509svid.SVID // guarded by mu
	renew   time.Time      // guarded by mu
	failing bool           // guarded by mu: the last issuance failed and was logged
}

var _ x509svid.Source = (*ownSVID)(nil)

// GetX509SVID returns the SVID, renewing it from half its life on; while
// renewal fails, the current one serves until it expires. The first
// failure of a run of them is logged as an error, the rest at debug level:
// anyone who can reach the server can make a handshake.
func (o *ownSVID) GetX509SVID() (*x509svid.SVID, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	now := o.now()
	if o.svid != nil && now.Before(o.renew) {
		return o.svid, nil
	}
	s, err := o.issue()
	if err != nil {
		valid := o.svid != nil && now.Before(o.svid.Certificates[0].NotAfter)
		level := slog.LevelError
		switch {
		case o.failing:
			level = slog.LevelDebug
		case valid:
			level = slog.LevelWarn
		}
		o.failing = true
		if valid {
			o.log.Log(context.Background(), level, "renewing the "+o.what+"'s X.509-SVID failed; serving the current one",
				"error", err, "notAfter", o.svid.Certificates[0].NotAfter)
			return o.svid, nil
		}
		without := o.without
		if without == "" {
			without = "its TLS handshakes fail"
		}
		o.log.Log(context.Background(), level, "no X.509-SVID for the "+o.what+": "+without, "error", err)
		return nil, err
	}
	o.failing = false
	leaf := s.Certificates[0]
	o.svid = s
	o.renew = leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) / 2)
	o.log.Info("issued the "+o.what+"'s X.509-SVID", "spiffeID", s.ID.String(), "notAfter", leaf.NotAfter, "renewAt", o.renew)
	return s, nil
}

// issue makes a key, and has the CA certify it for the ID.
func (o *ownSVID) issue() (*x509svid.SVID, error) {
	c := o.issuer()
	if c == nil {
		return nil, errNoCA
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("authority: %s key: %w", o.what, err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{o.id.URL()}}, key)
	if err != nil {
		return nil, fmt.Errorf("authority: %s CSR: %w", o.what, err)
	}
	s, err := c.IssueX509SVID(ca.X509Request{ID: o.id, CSR: csr, TTL: o.lifetime})
	if err != nil {
		return nil, fmt.Errorf("authority: %s X.509-SVID for %s: %w", o.what, o.id, err)
	}
	return &x509svid.SVID{ID: s.ID, Certificates: s.Certificates, PrivateKey: key}, nil
}

// AuditSVIDConfig configures NewAuditSVID.
type AuditSVIDConfig struct {
	// TrustDomain and Namespace make the authority's own SPIFFE ID,
	// spiffe://<TrustDomain>/ns/<Namespace>/sa/kzero-authority. Required.
	TrustDomain spiffeid.TrustDomain
	Namespace   string
	// CA returns the CA the replica has loaded (Replica.CA), nil while it
	// has none. Required.
	CA func() *ca.CA
	// Log receives issuances and failures. Required.
	Log *slog.Logger
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// NewAuditSVID returns the X.509-SVID whose key signs the checkpoints of
// the authority's audit trail (audit.ChainConfig.SVIDs): the authority's
// own SPIFFE ID, for a key made in memory, certified by the CA this
// replica has loaded, whether it leads or not, and renewed from half its
// life on. While no CA is loaded it returns an error: the checkpoint waits
// (audit.ErrCheckpoint) and the records go out, to be signed by the next
// one. It is safe for concurrent use.
func NewAuditSVID(cfg AuditSVIDConfig) (x509svid.Source, error) {
	var errs []error
	if cfg.TrustDomain.IsZero() {
		errs = append(errs, errors.New("trustDomain: required"))
	}
	if cfg.CA == nil {
		errs = append(errs, errors.New("ca: required"))
	}
	if cfg.Log == nil {
		errs = append(errs, errors.New("log: required"))
	}
	id, err := authorityID(cfg.TrustDomain, cfg.Namespace)
	if err != nil && !cfg.TrustDomain.IsZero() {
		errs = append(errs, fmt.Errorf("namespace: %q does not make the authority's SPIFFE ID: %w", cfg.Namespace, err))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("authority: invalid audit SVID config: %w", errors.Join(errs...))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	get := cfg.CA
	return &ownSVID{id: id, now: cfg.Now, log: cfg.Log, what: "audit trail", without: "its checkpoints wait, and its records go out unsigned until then",
		issuer: func() x509Issuer {
			if c := get(); c != nil {
				return c
			}
			return nil
		}}, nil
}
