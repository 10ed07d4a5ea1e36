package authority

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	admregclient "k8s.io/client-go/kubernetes/typed/admissionregistration/v1"
)

// webhookPatcher keeps the caBundle of every webhook of one
// MutatingWebhookConfiguration equal to the CA's X.509 authorities, so
// that kube-apiserver trusts the webhook's serving certificate.
type webhookPatcher struct {
	hooks admregclient.MutatingWebhookConfigurationInterface
	name  string
}

// patch sets the caBundle of every webhook of the configuration to b's
// X.509 authorities (PEM). It reports whether the configuration exists and
// whether it wrote; it creates nothing. An update carries the
// resourceVersion read, so a concurrent change is an error (retried),
// never overwritten blindly.
func (p *webhookPatcher) patch(ctx context.Context, b *spiffebundle.Bundle) (found, wrote bool, err error) {
	want := []byte(bundlePEM(b))
	if len(want) == 0 {
		return false, false, errors.New("authority: the CA's bundle has no X.509 authority for the webhook's caBundle")
	}
	cur, err := p.hooks.Get(ctx, p.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, false, nil
	}
	if err != nil {
		return false, false, fmt.Errorf("authority: read MutatingWebhookConfiguration %s: %w", p.name, err)
	}
	up := cur.DeepCopy()
	changed := false
	for i := range up.Webhooks {
		if !bytes.Equal(up.Webhooks[i].ClientConfig.CABundle, want) {
			up.Webhooks[i].ClientConfig.CABundle = want
			changed = true
		}
	}
	if !changed {
		return true, false, nil
	}
	if _, err := p.hooks.Update(ctx, up, metav1.UpdateOptions{}); err != nil {
		return true, false, fmt.Errorf("authority: update the caBundle of MutatingWebhookConfiguration %s: %w", p.name, err)
	}
	return true, true, nil
}
