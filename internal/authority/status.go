package authority

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	certv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kzero.dev/kzero/internal/ca"
)

// Condition reasons that are not denials.
const (
	// conditionIssued is the Issued condition's reason.
	conditionIssued = "Issued"
	// conditionSignerFailed is the Failed condition's reason: the CA
	// could not sign a request it should have signed.
	conditionSignerFailed = "SignerFailed"
)

// terminal reports whether the request already has its Issued, Denied or
// Failed condition: the signer's work on it is done.
func terminal(r *certv1.PodCertificateRequest) bool {
	for _, c := range r.Status.Conditions {
		switch c.Type {
		case certv1.PodCertificateRequestConditionTypeIssued, certv1.PodCertificateRequestConditionTypeDenied, certv1.PodCertificateRequestConditionTypeFailed:
			return true
		}
	}
	return false
}

// DefaultRefreshAt is where in a leaf's life kubelet is told to refresh
// it: at half life.
const DefaultRefreshAt = 0.5

// refreshMargin is how far from either end of a leaf's life the API
// requires beginRefreshAt to be.
const refreshMargin = 10 * time.Minute

// issuedStatus is the status of a request answered with svid: the chain,
// the leaf's validity, and a refresh at the fraction at of its life, kept
// at least refreshMargin from either end.
func issuedStatus(r *certv1.PodCertificateRequest, svid *ca.X509SVID, at float64, now time.Time) certv1.PodCertificateRequestStatus {
	nb, na := svid.NotBefore, svid.NotAfter
	refresh := nb.Add(time.Duration(float64(na.Sub(nb)) * at)).Truncate(time.Second)
	if lo := nb.Add(refreshMargin); refresh.Before(lo) {
		refresh = lo
	}
	if hi := na.Add(-refreshMargin); refresh.After(hi) {
		refresh = hi
	}
	return certv1.PodCertificateRequestStatus{
		Conditions: []metav1.Condition{condition(r, certv1.PodCertificateRequestConditionTypeIssued, conditionIssued,
			fmt.Sprintf("issued %s, valid until %s", svid.ID, na.UTC().Format(time.RFC3339)), now)},
		CertificateChain: string(svid.ChainPEM()),
		NotBefore:        &metav1.Time{Time: nb},
		BeginRefreshAt:   &metav1.Time{Time: refresh},
		NotAfter:         &metav1.Time{Time: na},
	}
}

// closedStatus is the status of a denied or failed request.
func closedStatus(r *certv1.PodCertificateRequest, typ, reason, message string, now time.Time) certv1.PodCertificateRequestStatus {
	return certv1.PodCertificateRequestStatus{Conditions: []metav1.Condition{condition(r, typ, reason, message, now)}}
}

func condition(r *certv1.PodCertificateRequest, typ, reason, message string, now time.Time) metav1.Condition {
	return metav1.Condition{
		Type: typ, Status: metav1.ConditionTrue, Reason: reason, Message: message,
		ObservedGeneration: r.Generation,
		LastTransitionTime: metav1.Time{Time: now},
	}
}

// checkLifetime checks what kube-apiserver will check of an issued leaf:
// it lives at least MinLifetime and at most maxExpirationSeconds.
func checkLifetime(r *certv1.PodCertificateRequest, svid *ca.X509SVID) error {
	limit := DefaultMaxExpiration
	if s := r.Spec.MaxExpirationSeconds; s != nil {
		limit = time.Duration(*s) * time.Second
	}
	got := svid.NotAfter.Sub(svid.NotBefore)
	if got < MinLifetime || got > limit {
		return fmt.Errorf("authority: the CA signed a leaf that lives %s, outside [%s, %s] (maxExpirationSeconds): the authority's lifetime or backdate does not match the CA's settings", got, MinLifetime, limit)
	}
	return nil
}

// refusal is how the signer answers an error of the CA: deny (with a
// reason), fail the request, or retry later (ok false).
type refusal struct {
	typ    string // Denied or Failed
	reason string
}

// classify maps an error of ca.IssueX509SVID to a refusal. Errors that the
// CA will get over by itself (no valid authority until Rotate, a store
// that could not be read) are retried; refusals of the request deny it;
// refusals that come from kzero's own settings fail it.
func classify(err error) (refusal, bool) {
	var re *ca.RequestError
	if !errors.As(err, &re) {
		return refusal{}, false
	}
	switch {
	case errors.Is(err, ca.ErrUnsupportedKey):
		return refusal{certv1.PodCertificateRequestConditionTypeDenied, string(ReasonUnsupportedKeyType)}, true
	case errors.Is(err, ca.ErrNoAuthority):
		return refusal{}, false
	case errors.Is(err, ca.ErrTTLTooLong), errors.Is(err, ca.ErrInvalidTTL):
		return refusal{certv1.PodCertificateRequestConditionTypeFailed, conditionSignerFailed}, true
	}
	return refusal{certv1.PodCertificateRequestConditionTypeDenied, string(ReasonInvalidRequest)}, true
}

// keyType names the CSR's key as the audit schema does; empty when it
// does not parse or is of another kind.
func keyType(csrDER []byte) string {
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return ""
	}
	switch k := csr.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if n, ok := map[string]string{"P-256": "P256", "P-384": "P384", "P-521": "P521"}[k.Curve.Params().Name]; ok {
			return "ECDSA-" + n
		}
	case ed25519.PublicKey:
		return "Ed25519"
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA-%d", k.N.BitLen())
	}
	return ""
}
