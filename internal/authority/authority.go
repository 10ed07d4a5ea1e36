package authority

import (
	"context"
	"log/slog"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"k8s.io/client-go/kubernetes"

	"kzero.dev/kzero/api/v1alpha1"
	"kzero.dev/kzero/internal/ca"
	"kzero.dev/kzero/internal/run"
)

// Config configures an Authority: the Signer and the Rotator of one CA.
type Config struct {
	// Client reaches the API server. Required.
	Client kubernetes.Interface
	// CA signs, rotates and gives the bundle. Required.
	CA *ca.CA
	// TrustDomain must be the CA's. Required.
	TrustDomain spiffeid.TrustDomain
	// Namespace is the one kzero runs in: see SignerConfig.
	Namespace string
	// Audit records every issuance and refusal. Required.
	Audit Auditor
	// Log receives operational messages. Required.
	Log *slog.Logger
	// Lifetime and RefreshAt: see SignerConfig.
	Lifetime  time.Duration
	RefreshAt float64
	// WebhookConfig: see RotatorConfig.
	WebhookConfig string
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// Authority signs PodCertificateRequests and keeps the CA rotated and its
// bundle published.
type Authority struct {
	signer  *Signer
	rotator *Rotator
}

// New checks cfg and builds the Signer and the Rotator; it makes no
// request until Run. The ClusterTrustBundle is
// v1alpha1.TrustBundleName(trust domain).
func New(cfg Config) (*Authority, error) {
	var issuer Issuer
	var rotating Rotating
	if cfg.CA != nil {
		issuer, rotating = cfg.CA, cfg.CA
	}
	s, err := NewSigner(SignerConfig{Client: cfg.Client, CA: issuer, TrustDomain: cfg.TrustDomain, Namespace: cfg.Namespace,
		Audit: cfg.Audit, Log: cfg.Log, Lifetime: cfg.Lifetime, RefreshAt: cfg.RefreshAt, Now: cfg.Now})
	if err != nil {
		return nil, err
	}
	r, err := NewRotator(RotatorConfig{Client: cfg.Client, CA: rotating, BundleName: v1alpha1.TrustBundleName(cfg.TrustDomain.Name()),
		WebhookConfig: cfg.WebhookConfig, Log: cfg.Log, Now: cfg.Now})
	if err != nil {
		return nil, err
	}
	return &Authority{signer: s, rotator: r}, nil
}

// Run runs the Signer and the Rotator until ctx ends or one of them fails;
// it stops the other and returns the first error (ctx.Err() when ctx
// ended).
func (a *Authority) Run(ctx context.Context) error {
	return run.All(ctx, a.rotator.Run, a.signer.Run)
}
