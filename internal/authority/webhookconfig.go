package authority

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	admregv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	admregclient "k8s.io/client-go/kubernetes/typed/admissionregistration/v1"
)

// webhookPatcher keeps the caBundle of every webhook of the
// MutatingWebhookConfiguration and of the ValidatingWebhookConfiguration
// of one name (kzero install makes both) equal to the CA's X.509
// authorities, so that kube-apiserver trusts the webhooks' serving
// certificate.
type webhookPatcher struct {
	mutating   admregclient.MutatingWebhookConfigurationInterface
	validating admregclient.ValidatingWebhookConfigurationInterface
	name       string
}

// patch sets the caBundle of every webhook of both configurations to b's
// X.509 authorities (PEM). It reports whether the mutating configuration
// exists (the validating one is patched when it exists: an install older
// than it has none) and whether it wrote; it creates nothing. An update
// carries the resourceVersion read, so a concurrent change is an error
// (retried), never overwritten blindly.
func (p *webhookPatcher) patch(ctx context.Context, b *spiffebundle.Bundle) (found, wrote bool, err error) {
	want := []byte(bundlePEM(b))
	if len(want) == 0 {
		return false, false, errors.New("authority: the CA's bundle has no X.509 authority for the webhooks' caBundle")
	}
	found, wroteM, err := p.patchMutating(ctx, want)
	if err != nil || !found {
		return found, wroteM, err
	}
	_, wroteV, err := p.patchValidating(ctx, want)
	return true, wroteM || wroteV, err
}

func (p *webhookPatcher) patchMutating(ctx context.Context, want []byte) (found, wrote bool, err error) {
	cur, err := p.mutating.Get(ctx, p.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, false, nil
	}
	if err != nil {
		return false, false, fmt.Errorf("authority: read MutatingWebhookConfiguration %s: %w", p.name, err)
	}
	up := cur.DeepCopy()
	configs := make([]*admregv1.WebhookClientConfig, len(up.Webhooks))
	for i := range up.Webhooks {
		configs[i] = &up.Webhooks[i].ClientConfig
	}
	if !setCABundle(configs, want) {
		return true, false, nil
	}
	if _, err := p.mutating.Update(ctx, up, metav1.UpdateOptions{}); err != nil {
		return true, false, fmt.Errorf("authority: update the caBundle of MutatingWebhookConfiguration %s: %w", p.name, err)
	}
	return true, true, nil
}

func (p *webhookPatcher) patchValidating(ctx context.Context, want []byte) (found, wrote bool, err error) {
	cur, err := p.validating.Get(ctx, p.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, false, nil
	}
	if err != nil {
		return false, false, fmt.Errorf("authority: read ValidatingWebhookConfiguration %s: %w", p.name, err)
	}
	up := cur.DeepCopy()
	configs := make([]*admregv1.WebhookClientConfig, len(up.Webhooks))
	for i := range up.Webhooks {
		configs[i] = &up.Webhooks[i].ClientConfig
	}
	if !setCABundle(configs, want) {
		return true, false, nil
	}
	if _, err := p.validating.Update(ctx, up, metav1.UpdateOptions{}); err != nil {
		return true, false, fmt.Errorf("authority: update the caBundle of ValidatingWebhookConfiguration %s: %w", p.name, err)
	}
	return true, true, nil
}

// setCABundle sets every config's caBundle to want; it reports whether it
// changed any.
func setCABundle(configs []*admregv1.WebhookClientConfig, want []byte) bool {
	changed := false
	for _, c := range configs {
		if !bytes.Equal(c.CABundle, want) {
			c.CABundle = want
			changed = true
		}
	}
	return changed
}
