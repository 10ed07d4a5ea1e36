package authority

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	certv1 "k8s.io/api/certificates/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	certclient "k8s.io/client-go/kubernetes/typed/certificates/v1"
)

// bundlePEM is the ClusterTrustBundle's trustBundle for b: every X.509
// authority, PEM, in the bundle's order.
func bundlePEM(b *spiffebundle.Bundle) string {
	var out []byte
	for _, c := range b.X509Authorities() {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return string(out)
}

// publisher keeps one ClusterTrustBundle equal to the CA's bundle.
type publisher struct {
	ctbs certclient.ClusterTrustBundleInterface
	name string
}

// publish creates or updates the ClusterTrustBundle so that it holds b's
// X.509 authorities; it writes nothing when it already does. It reports
// whether it wrote. An update carries the resourceVersion it read, so a
// concurrent change is an error (retried at the next publish), never
// overwritten blindly.
func (p *publisher) publish(ctx context.Context, b *spiffebundle.Bundle) (bool, error) {
	want := bundlePEM(b)
	if want == "" {
		return false, errors.New("authority: the CA's bundle has no X.509 authority to publish")
	}
	cur, err := p.ctbs.Get(ctx, p.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = p.ctbs.Create(ctx, &certv1.ClusterTrustBundle{
			ObjectMeta: metav1.ObjectMeta{Name: p.name, Labels: map[string]string{
				"app.kubernetes.io/managed-by": "kzero", "app.kubernetes.io/component": "authority",
			}},
			Spec: certv1.ClusterTrustBundleSpec{SignerName: SignerName, TrustBundle: want},
		}, metav1.CreateOptions{})
		if err != nil {
			return false, fmt.Errorf("authority: create ClusterTrustBundle %s: %w", p.name, err)
		}
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("authority: read ClusterTrustBundle %s: %w", p.name, err)
	}
	if cur.Spec.SignerName != SignerName {
		return false, fmt.Errorf("authority: ClusterTrustBundle %s has signerName %q, not %s: delete it so that kzero can publish its own", p.name, cur.Spec.SignerName, SignerName)
	}
	if cur.Spec.TrustBundle == want {
		return false, nil
	}
	up := cur.DeepCopy()
	up.Spec.TrustBundle = want
	if _, err := p.ctbs.Update(ctx, up, metav1.UpdateOptions{}); err != nil {
		return false, fmt.Errorf("authority: update ClusterTrustBundle %s: %w", p.name, err)
	}
	return true, nil
}
