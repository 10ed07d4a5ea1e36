package authority

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"k8s.io/client-go/kubernetes"

	"kzero.dev/kzero/api/v1alpha1"
	"kzero.dev/kzero/internal/ca"
)

// Rotating is the part of the CA the Rotator drives: *ca.CA.
type Rotating interface {
	Rotate(context.Context) (ca.RotationReport, error)
	Next() time.Time
	Bundle() *spiffebundle.Bundle
}

// RotatorConfig configures a Rotator.
type RotatorConfig struct {
	// Client reaches the API server. Required.
	Client kubernetes.Interface
	// CA is rotated and its bundle published. Required.
	CA Rotating
	// BundleName is the ClusterTrustBundle's name; it must start with
	// v1alpha1.TrustBundleNamePrefix. Required
	// (v1alpha1.TrustBundleName(trustDomain) is the usual).
	BundleName string
	// WebhookConfig names the MutatingWebhookConfiguration, and the
	// ValidatingWebhookConfiguration of the same name, whose webhooks'
	// caBundle the Rotator keeps equal to the bundle's X.509 authorities
	// (PEM); empty: none. The Rotator never creates them (kzero install
	// does); while the mutating one is missing, it looks again after
	// Retry.
	WebhookConfig string
	// Log receives operational messages. Required.
	Log *slog.Logger
	// Retry is how soon a failed rotation or publication is tried again;
	// zero means 10 seconds.
	Retry time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// Rotator runs the CA's rotation at the times the CA names, and keeps the
// ClusterTrustBundle equal to the CA's bundle: it publishes at start and
// after every rotation (and repairs the object if someone changed it).
type Rotator struct {
	cfg  RotatorConfig
	pub  publisher
	hook webhookPatcher
}

// NewRotator checks cfg; it makes no request until Run.
func NewRotator(cfg RotatorConfig) (*Rotator, error) {
	var errs []error
	if cfg.Client == nil {
		errs = append(errs, errors.New("client: required"))
	}
	if cfg.CA == nil {
		errs = append(errs, errors.New("ca: required"))
	}
	if !strings.HasPrefix(cfg.BundleName, v1alpha1.TrustBundleNamePrefix) || cfg.BundleName == v1alpha1.TrustBundleNamePrefix {
		errs = append(errs, fmt.Errorf("bundleName: %q must be %s followed by a name (kube-apiserver's rule for a signer's ClusterTrustBundle)", cfg.BundleName, v1alpha1.TrustBundleNamePrefix))
	}
	if cfg.Log == nil {
		errs = append(errs, errors.New("log: required"))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("authority: invalid rotator config: %w", errors.Join(errs...))
	}
	if cfg.Retry <= 0 {
		cfg.Retry = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Rotator{cfg: cfg,
		pub: publisher{ctbs: cfg.Client.CertificatesV1().ClusterTrustBundles(), name: cfg.BundleName},
		hook: webhookPatcher{mutating: cfg.Client.AdmissionregistrationV1().MutatingWebhookConfigurations(),
			validating: cfg.Client.AdmissionregistrationV1().ValidatingWebhookConfigurations(), name: cfg.WebhookConfig},
	}, nil
}

// Run publishes the bundle, then rotates at every time the CA names and
// publishes again, until ctx ends; it returns ctx.Err(). Each time it also
// sets the webhook configuration's caBundle. Failures are logged and
// retried after Retry: the CA keeps signing with its current state
// meanwhile.
func (r *Rotator) Run(ctx context.Context) error {
	log := r.cfg.Log
	for {
		wait := r.cfg.Retry
		rep, err := r.cfg.CA.Rotate(ctx)
		for _, step := range rep.Steps {
			log.Info("CA rotated", "step", step, "sequence", rep.Sequence)
		}
		if err != nil {
			log.Error("CA rotation failed; the CA keeps its current state", "error", err, "retryIn", wait)
		} else if wrote, err := r.pub.publish(ctx, r.cfg.CA.Bundle()); err != nil {
			log.Error("publishing the trust bundle failed", "clusterTrustBundle", r.cfg.BundleName, "error", err, "retryIn", wait)
		} else {
			if wrote {
				log.Info("published the trust bundle", "clusterTrustBundle", r.cfg.BundleName, "sequence", rep.Sequence)
			}
			wait = r.cfg.CA.Next().Sub(r.cfg.Now())
		}
		if err == nil && r.cfg.WebhookConfig != "" {
			found, wrote, err := r.hook.patch(ctx, r.cfg.CA.Bundle())
			switch {
			case err != nil:
				log.Error("setting the webhooks' caBundle failed", "webhookConfiguration", r.cfg.WebhookConfig, "error", err, "retryIn", r.cfg.Retry)
				wait = min(wait, r.cfg.Retry)
			case !found:
				log.Debug("no webhook configuration yet (kzero install creates it)", "webhookConfiguration", r.cfg.WebhookConfig, "retryIn", r.cfg.Retry)
				wait = min(wait, r.cfg.Retry)
			case wrote:
				log.Info("set the webhooks' caBundle", "webhookConfiguration", r.cfg.WebhookConfig, "sequence", rep.Sequence)
			}
		}
		t := time.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}
