package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"net/url"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// X509Request asks for an X.509-SVID. The caller has already decided, by
// attestation, that the requester may have ID; the CA checks that the
// request is well formed and that its signer holds the key.
type X509Request struct {
	// ID is the SPIFFE ID to certify. It must be in the CA's trust domain
	// and have a path.
	ID spiffeid.ID
	// CSR is a PKCS#10 request, DER, signed with the subject's private key:
	// the proof that the requester holds it. It may name no SAN or exactly
	// ID; its subject is ignored. A PodCertificateRequest's
	// spec.stubPKCS10Request is such a CSR.
	CSR []byte
	// PublicKey (PKIX, DER) with ProofOfPossession is the other proof, that
	// of the deprecated v1beta1 PodCertificateRequest fields
	// spec.pkixPublicKey and spec.proofOfPossession: the key's signature
	// over the ASCII bytes of PodUID (ECDSA over their SHA-256, ASN.1; RSA
	// PSS over their SHA-256; Ed25519 over the bytes themselves). Send
	// either CSR or these, not both.
	PublicKey, ProofOfPossession []byte
	// PodUID is the message ProofOfPossession signs.
	PodUID string
	// TTL is the lifetime asked for; zero means the configured default.
	TTL time.Duration
}

// X509SVID is an issued X.509-SVID.
type X509SVID struct {
	// ID is the SPIFFE ID it certifies.
	ID spiffeid.ID
	// Chain is the leaf then the certificates that link it to a root, DER.
	Chain [][]byte
	// Certificates are the parsed forms of Chain.
	Certificates []*x509.Certificate
	// NotBefore and NotAfter are the leaf's validity.
	NotBefore, NotAfter time.Time
}

// ChainPEM returns the chain as PEM blocks, leaf first: the form of a
// PodCertificateRequest's status.certificateChain.
func (s *X509SVID) ChainPEM() []byte {
	var out []byte
	for _, der := range s.Chain {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	return out
}

var oidBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}

// CheckX509Request checks a request without signing it: the ID, the TTL
// (returned with its default applied), the proof of possession, the key
// and the names. It returns the public key to certify. Every refusal is a
// *RequestError.
func (c *CA) CheckX509Request(req X509Request) (crypto.PublicKey, time.Duration, error) {
	if err := c.checkID(req.ID); err != nil {
		return nil, 0, err
	}
	ttl, err := checkTTL(req.TTL, c.cfg.X509SVIDTTL, c.cfg.X509SVIDMaxTTL)
	if err != nil {
		return nil, 0, err
	}
	hasKey := len(req.PublicKey) > 0 || len(req.ProofOfPossession) > 0
	switch {
	case len(req.CSR) > 0 && hasKey:
		return nil, 0, refuse(ErrInvalidProof, "the request has both a CSR and a public key with a proof of possession: send one of them")
	case hasKey:
		pub, err := checkProofOfPossession(req.PublicKey, req.ProofOfPossession, req.PodUID)
		return pub, ttl, err
	}
	csr, err := parseCSR(req.CSR)
	if err != nil {
		return nil, 0, err
	}
	if err := checkCSRNames(csr, req.ID); err != nil {
		return nil, 0, err
	}
	return csr.PublicKey, ttl, nil
}

// checkProofOfPossession verifies a signature by a PKIX public key over the
// pod UID, as kube-apiserver does for v1beta1 PodCertificateRequests.
func checkProofOfPossession(pkix, proof []byte, podUID string) (crypto.PublicKey, error) {
	switch {
	case len(pkix) == 0:
		return nil, refuse(ErrInvalidProof, "the proof of possession comes without its public key: send the PKIX public key too")
	case len(proof) == 0:
		return nil, refuse(ErrInvalidProof, "the public key comes without a proof of possession: sign the pod UID with the private key")
	case podUID == "":
		return nil, refuse(ErrInvalidProof, "the proof of possession names no pod UID: send the UID it signs")
	}
	pub, err := x509.ParsePKIXPublicKey(pkix)
	if err != nil {
		e := refuse(ErrInvalidProof, "the public key does not parse as DER PKIX: send the DER bytes of a SubjectPublicKeyInfo")
		e.Cause = err
		return nil, e
	}
	if err := checkSubjectKey(pub); err != nil {
		return nil, err
	}
	digest := sha256.Sum256([]byte(podUID))
	ok := false
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		ok = ecdsa.VerifyASN1(k, digest[:], proof)
	case *rsa.PublicKey:
		ok = rsa.VerifyPSS(k, crypto.SHA256, digest[:], proof, nil) == nil
	case ed25519.PublicKey:
		ok = ed25519.Verify(k, []byte(podUID), proof)
	}
	if !ok {
		return nil, refuse(ErrBadSignature, "the proof of possession does not verify with the public key over pod UID %q: sign exactly the pod's UID with the private key", podUID)
	}
	return pub, nil
}

// parseCSR parses a CSR and checks its signature and key and that it does
// not ask for a CA.
func parseCSR(der []byte) (*x509.CertificateRequest, error) {
	if len(der) == 0 {
		return nil, refuse(ErrInvalidCSR, "the request has no CSR: send a PKCS#10 request signed with the key to certify, or the public key with a proof of possession")
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		e := refuse(ErrInvalidCSR, "the CSR does not parse as a DER PKCS#10 certificate request: send the DER bytes, not PEM or text")
		e.Cause = err
		return nil, e
	}
	if err := checkSubjectKey(csr.PublicKey); err != nil {
		return nil, err
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, refuse(ErrBadSignature, "the CSR's signature does not verify with its public key (%v): sign the CSR with the private key it names", err)
	}
	for _, ext := range csr.Extensions {
		if !ext.Id.Equal(oidBasicConstraints) {
			continue
		}
		var bc struct {
			IsCA       bool `asn1:"optional"`
			MaxPathLen int  `asn1:"optional,default:-1"`
		}
		if rest, err := asn1.Unmarshal(ext.Value, &bc); err != nil || len(rest) > 0 {
			return nil, refuse(ErrInvalidCSR, "the CSR's basic constraints extension does not parse: leave it out")
		}
		if bc.IsCA {
			return nil, refuse(ErrCARequested, "the CSR asks for a CA certificate: X.509-SVIDs are leaves, remove the CA bit")
		}
	}
	return csr, nil
}

// checkCSRNames accepts a CSR that names no SAN, or exactly the ID.
func checkCSRNames(csr *x509.CertificateRequest, id spiffeid.ID) error {
	if n, err := countSANs(csr); err != nil {
		return err
	} else if known := len(csr.DNSNames) + len(csr.IPAddresses) + len(csr.EmailAddresses) + len(csr.URIs); n > known {
		return refuse(ErrExtraSAN, "the CSR names subject alternative names of other types (otherName, directoryName, registeredID): an X.509-SVID carries only its SPIFFE ID, remove them")
	}
	switch {
	case len(csr.DNSNames) > 0:
		return refuse(ErrExtraSAN, "the CSR names DNS SAN %q: an X.509-SVID from this CA carries only its SPIFFE ID, remove the DNS names", csr.DNSNames[0])
	case len(csr.IPAddresses) > 0:
		return refuse(ErrExtraSAN, "the CSR names IP SAN %s: an X.509-SVID from this CA carries only its SPIFFE ID, remove the IP addresses", csr.IPAddresses[0])
	case len(csr.EmailAddresses) > 0:
		return refuse(ErrExtraSAN, "the CSR names email SAN %q: an X.509-SVID from this CA carries only its SPIFFE ID, remove the email addresses", csr.EmailAddresses[0])
	case len(csr.URIs) > 1:
		return refuse(ErrExtraSAN, "the CSR names %d URI SANs: an X.509-SVID has exactly one, its SPIFFE ID", len(csr.URIs))
	case len(csr.URIs) == 1:
		got, err := spiffeid.FromURI(csr.URIs[0])
		if err != nil {
			return refuse(ErrInvalidID, "the CSR's URI SAN %q is not a SPIFFE ID (%v): name %s or no SAN at all", csr.URIs[0], err, id)
		}
		if got != id {
			return refuse(ErrExtraSAN, "the CSR names %s but the request is for %s: name %s or no SAN at all", got, id, id)
		}
	}
	return nil
}

var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

// countSANs counts every GeneralName in the CSR's SAN extensions, of any
// type, so that names Go's parser does not surface are not ignored.
func countSANs(csr *x509.CertificateRequest) (int, error) {
	n := 0
	for _, ext := range csr.Extensions {
		if !ext.Id.Equal(oidSubjectAltName) {
			continue
		}
		var names []asn1.RawValue
		if rest, err := asn1.Unmarshal(ext.Value, &names); err != nil || len(rest) > 0 {
			return 0, refuse(ErrInvalidCSR, "the CSR's subject alternative name extension does not parse: name the SPIFFE ID as a URI, or leave it out")
		}
		n += len(names)
	}
	return n, nil
}

// checkID accepts a leaf SPIFFE ID of the CA's trust domain.
func (c *CA) checkID(id spiffeid.ID) error {
	if id.IsZero() {
		return refuse(ErrInvalidID, "the request names no SPIFFE ID")
	}
	if id.TrustDomain() != c.cfg.TrustDomain {
		return refuse(ErrForeignTrustDomain, "%s is outside trust domain %q: this CA certifies only spiffe://%s/... IDs", id, c.cfg.TrustDomain.Name(), c.cfg.TrustDomain.Name())
	}
	if id.Path() == "" {
		return refuse(ErrInvalidID, "%s has no path: a workload's SPIFFE ID needs one, such as /ns/<namespace>/sa/<service-account>", id)
	}
	return nil
}

// ParseID parses a SPIFFE ID per the SPIFFE-ID standard, refusing it with
// ErrInvalidID (and what exactly is wrong) when it is not one.
func ParseID(s string) (spiffeid.ID, error) {
	id, err := spiffeid.FromString(s)
	if err != nil {
		return spiffeid.ID{}, refuse(ErrInvalidID, "%q is not a SPIFFE ID: %v; the form is spiffe://<trust-domain>/<path>", s, err)
	}
	return id, nil
}

func checkTTL(ttl, def, limit time.Duration) (time.Duration, error) {
	switch {
	case ttl < 0:
		return 0, refuse(ErrInvalidTTL, "TTL %s is negative: ask for a positive TTL, or zero for the default %s", ttl, def)
	case ttl == 0:
		return def, nil
	case ttl > limit:
		return 0, refuse(ErrTTLTooLong, "TTL %s is over the maximum %s: ask for %s or less", ttl, limit, limit)
	}
	return ttl, nil
}

// IssueX509SVID checks req and signs an X.509-SVID for it with the active
// issuing CA, per the SPIFFE X509-SVID standard: one URI SAN, not a CA, key
// usage digitalSignature (critical), extended key usage serverAuth and
// clientAuth. The leaf never outlives the CA that signs it, and its
// signature is verified before it is returned (x509.CreateCertificate
// checks every signature it makes against the issuer's public key).
func (c *CA) IssueX509SVID(req X509Request) (*X509SVID, error) {
	pub, ttl, err := c.CheckX509Request(req)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{Organization: []string{"kzero"}},
		URIs:        []*url.URL{req.ID.URL()},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	chain, certs, err := c.signLeaf(tmpl, pub, ttl, "X.509-SVID for "+req.ID.String())
	if err != nil {
		return nil, err
	}
	return &X509SVID{ID: req.ID, Chain: chain, Certificates: certs, NotBefore: certs[0].NotBefore, NotAfter: certs[0].NotAfter}, nil
}

// signLeaf signs tmpl for pub with the issuing CA that signs now, as a
// leaf of ttl: it sets the serial number, the validity (leafWindow) and
// the leaf's constraints (not a CA, key usage digitalSignature), verifies
// the signature (x509.CreateCertificate does) and parses the result. It
// returns the chain, leaf first; what names the certificate in errors.
func (c *CA) signLeaf(tmpl *x509.Certificate, pub crypto.PublicKey, ttl time.Duration, what string) ([][]byte, []*x509.Certificate, error) {
	is, notBefore, notAfter, err := c.leafWindow(ttl)
	if err != nil {
		return nil, nil, err
	}
	if tmpl.SerialNumber, err = serialNumber(c.cfg.Rand); err != nil {
		return nil, nil, err
	}
	tmpl.NotBefore, tmpl.NotAfter = notBefore, notAfter
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.BasicConstraintsValid, tmpl.IsCA = true, false
	der, err := x509.CreateCertificate(c.cfg.Rand, tmpl, is.rec.cert, pub, is.rec.signer)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: sign %s: %w", what, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: the signed %s does not parse: %w", what, err)
	}
	chain := append(append(make([][]byte, 0, 1+len(is.chain)), der), is.chain...)
	certs := append(append(make([]*x509.Certificate, 0, 1+len(is.chain)), leaf), is.chainCerts...)
	return chain, certs, nil
}

// leafWindow picks the issuing CA that signs now and the validity of a
// leaf of ttl: backdated for clock skew, never before the CA's own
// validity, never after its expiry. It refuses with ErrNoAuthority when no
// CA may sign now.
func (c *CA) leafWindow(ttl time.Duration) (is *issuer, notBefore, notAfter time.Time, err error) {
	now := c.cfg.Now()
	is = c.snap.Load().activeIssuer(now)
	if is == nil {
		return nil, notBefore, notAfter, refuse(ErrNoAuthority, "no issuing CA is valid at %s: the CA must rotate (is its clock right?)", now.Format(time.RFC3339))
	}
	if now.Before(is.rec.cert.NotBefore) {
		return nil, notBefore, notAfter, refuse(ErrNoAuthority, "the clock reads %s, before the issuing CA is valid (%s): fix the clock", now.UTC().Format(time.RFC3339), is.rec.cert.NotBefore.UTC().Format(time.RFC3339))
	}
	notBefore = now.Add(-c.cfg.Backdate).Truncate(time.Second)
	if notBefore.Before(is.rec.cert.NotBefore) {
		notBefore = is.rec.cert.NotBefore
	}
	notAfter = now.Add(ttl).Truncate(time.Second)
	if notAfter.After(is.rec.NotAfter) {
		notAfter = is.rec.NotAfter
	}
	if notAfter.Sub(now) < minimumLeafTTLAfterClamp {
		return nil, notBefore, notAfter, refuse(ErrNoAuthority, "the issuing CA expires at %s, too soon to sign: the CA must rotate", is.rec.NotAfter.Format(time.RFC3339))
	}
	return is, notBefore, notAfter, nil
}
