package audit

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Signature algorithms of checkpoints, named as in JOSE.
const (
	algES256 = "ES256"
	algES384 = "ES384"
)

// algFor returns the algorithm and digest for an SVID's public key.
func algFor(pub crypto.PublicKey) (string, crypto.Hash, error) {
	k, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return "", 0, fmt.Errorf("a %T key signs no checkpoint: the SVID's key must be ECDSA P-256 or P-384", pub)
	}
	switch k.Curve {
	case elliptic.P256():
		return algES256, crypto.SHA256, nil
	case elliptic.P384():
		return algES384, crypto.SHA384, nil
	}
	return "", 0, fmt.Errorf("ECDSA on %s signs no checkpoint: the SVID's key must be P-256 or P-384", k.Curve.Params().Name)
}

func digest(h crypto.Hash, msg []byte) []byte {
	if h == crypto.SHA384 {
		d := sha512.Sum384(msg)
		return d[:]
	}
	d := sha256.Sum256(msg)
	return d[:]
}

// sign signs msg, the checkpoint before its sig member, with the SVID's
// key, refusing an SVID that is not valid at now.
func sign(svid *x509svid.SVID, msg []byte, now time.Time, rnd io.Reader) ([]byte, error) {
	if svid == nil || len(svid.Certificates) == 0 || svid.PrivateKey == nil {
		return nil, errors.New("the SVID source returned no certificate or key")
	}
	leaf := svid.Certificates[0]
	if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		return nil, fmt.Errorf("the SVID %s is valid from %s to %s, not now (%s): renew it",
			svid.ID, leaf.NotBefore.Format(time.RFC3339), leaf.NotAfter.Format(time.RFC3339), now.Format(time.RFC3339))
	}
	_, h, err := algFor(leaf.PublicKey)
	if err != nil {
		return nil, err
	}
	return svid.PrivateKey.Sign(rnd, digest(h, msg), h)
}

// verifyCheckpoint checks a checkpoint's signature with the key of its
// certificate chain's leaf, that the leaf names the checkpoint's signer,
// that the signer is one opts trusts (its trust domain, its Signers) and,
// with a bundle, that the chain is an X.509-SVID of the trust domain valid
// at the checkpoint's time.
func verifyCheckpoint(r *record, opts *Options) error {
	bad := func(kind error, cause error, format string, args ...any) error {
		return &RecordError{Kind: kind, Cause: cause, Detail: fmt.Sprintf(format, args...)}
	}
	cp := r.Checkpoint
	if len(cp.X5C) == 0 {
		return bad(ErrSignature, nil, "checkpoint carries no certificate: nothing can verify it")
	}
	certs := make([]*x509.Certificate, 0, len(cp.X5C))
	for i, der := range cp.X5C {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return bad(ErrSignature, err, "checkpoint's certificate %d does not parse: %v", i, err)
		}
		certs = append(certs, c)
	}
	id, err := x509svid.IDFromCert(certs[0])
	if err != nil || id != cp.Signer {
		return bad(ErrSignature, err, "checkpoint's signer %s is not the SPIFFE ID of its certificate", cp.Signer)
	}
	alg, h, err := algFor(certs[0].PublicKey)
	if err != nil || alg != cp.Alg {
		return bad(ErrSignature, err, "checkpoint's alg %q does not fit its certificate's key", cp.Alg)
	}
	sig, err := base64.StdEncoding.Strict().DecodeString(r.Sig)
	if err != nil || !ecdsa.VerifyASN1(certs[0].PublicKey.(*ecdsa.PublicKey), digest(h, r.signed), sig) {
		return bad(ErrSignature, err, "checkpoint's signature does not verify: the checkpoint was changed or forged")
	}
	if td := opts.TrustDomain; !td.IsZero() && !id.MemberOf(td) {
		return bad(ErrUntrusted, nil, "checkpoint signed by %s, outside the trust domain %s", id, td)
	}
	if len(opts.Signers) > 0 && !slices.Contains(opts.Signers, id) {
		return bad(ErrUntrusted, nil, "checkpoint signed by %s, not by %s: another workload signed it, and may have written every record before it (if that signer is expected, name it with --signer)",
			id, signerList(opts.Signers))
	}
	if opts.Bundle == nil {
		return nil
	}
	if _, _, err := x509svid.Verify(certs, opts.Bundle, x509svid.WithTime(r.Time)); err != nil {
		return bad(ErrUntrusted, err, "checkpoint signed by %s, whose certificate does not verify against the bundle at %s: %v",
			id, r.Time.UTC().Format(time.RFC3339), err)
	}
	return nil
}

// signerList names the expected signers: "a", "a or b", "a, b or c".
func signerList(ids []spiffeid.ID) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = id.String()
	}
	if len(s) == 1 {
		return s[0]
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}
