package authority

import (
	"encoding/hex"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	certv1 "k8s.io/api/certificates/v1"

	"kzero.dev/kzero/internal/audit"
	"kzero.dev/kzero/internal/ca"
)

// requester names the pod a request is for, as the audit schema does.
func requester(r *certv1.PodCertificateRequest) string {
	return fmt.Sprintf("pod/%s/%s/%s", r.Namespace, r.Spec.PodName, r.Spec.PodUID)
}

// issuedEvent is the audit event of a delivered X.509-SVID.
func issuedEvent(r *certv1.PodCertificateRequest, svid *ca.X509SVID) audit.Event {
	p := &audit.Issuance{
		SPIFFEID:  svid.ID,
		Type:      audit.SVIDTypeX509,
		NotBefore: svid.NotBefore,
		NotAfter:  svid.NotAfter,
		KeyType:   keyType(r.Spec.StubPKCS10Request),
		Requester: requester(r),
	}
	if len(svid.Certificates) > 0 {
		p.Serial = fmt.Sprintf("%x", svid.Certificates[0].SerialNumber)
	}
	if len(svid.Certificates) > 1 {
		p.SignerKeyID = hex.EncodeToString(svid.Certificates[1].SubjectKeyId)
	}
	return audit.Event{
		Kind: audit.KindIssuance, Outcome: audit.OutcomeSuccess,
		Reason:   fmt.Sprintf("issued for PodCertificateRequest %s/%s", r.Namespace, r.Name),
		Issuance: p,
	}
}

// refusedEvent is the audit event of a denied or failed request. id is the
// SPIFFE ID asked for; when the request names none that is valid, the
// trust domain's own ID stands in.
func refusedEvent(r *certv1.PodCertificateRequest, id spiffeid.ID, td spiffeid.TrustDomain, reason, message string) audit.Event {
	if id.IsZero() {
		id = askedID(r, td)
	}
	return audit.Event{
		Kind: audit.KindIssuance, Outcome: audit.OutcomeFailure,
		Reason: fmt.Sprintf("refused PodCertificateRequest %s/%s: %s: %s", r.Namespace, r.Name, reason, message),
		Issuance: &audit.Issuance{
			SPIFFEID:  id,
			Type:      audit.SVIDTypeX509,
			KeyType:   keyType(r.Spec.StubPKCS10Request),
			Requester: requester(r),
		},
	}
}

// askedID is the ID the request would get: the pod's namespace and service
// account in td, or td's own ID if they make no valid ID.
func askedID(r *certv1.PodCertificateRequest, td spiffeid.TrustDomain) spiffeid.ID {
	if id, err := spiffeid.FromSegments(td, "ns", r.Namespace, "sa", r.Spec.ServiceAccountName); err == nil {
		return id
	}
	return td.ID()
}
