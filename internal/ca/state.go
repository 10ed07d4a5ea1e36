package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"time"
)

// Store persists the CA's state as one opaque document, private keys
// included, so that a state and the keys it names are always written
// together. Implementations must write atomically and keep the document
// secret (file mode 0600, a Kubernetes Secret).
type Store interface {
	// Load returns the last document saved, or an error wrapping
	// fs.ErrNotExist when nothing was ever saved. Any other error means
	// the store cannot be read, and the CA refuses to start.
	Load(ctx context.Context) ([]byte, error)
	// Save replaces the document atomically.
	Save(ctx context.Context, doc []byte) error
}

// stateVersion is the version of the document this package writes.
const stateVersion = 1

// state is what the CA persists. Records are kept oldest first.
type state struct {
	Version     int       `json:"version"`
	TrustDomain string    `json:"trustDomain"`
	Sequence    uint64    `json:"sequence"`
	Roots       []*record `json:"roots"`
	Issuers     []*record `json:"issuers"`
	JWTKeys     []*record `json:"jwtKeys"`
}

// record is one authority: a root CA, an issuing CA or a JWT signing key.
type record struct {
	// ID names the record: the key ID of a JWT key, a serial-derived name
	// for a CA.
	ID string `json:"id"`
	// Parent is the ID of the root that signed an issuing CA.
	Parent string `json:"parent,omitempty"`
	// Cert is the CA certificate (DER); absent for JWT keys.
	Cert []byte `json:"cert,omitempty"`
	// CrossCert is a root's certificate signed by the root before it, so
	// that peers that know only the old root verify the new one.
	CrossCert []byte `json:"crossCert,omitempty"`
	// Key is the private key, PKCS#8 DER.
	Key []byte `json:"key"`
	// Created is when the record was made and published.
	Created time.Time `json:"created"`
	// ActivateAt is when it starts to sign.
	ActivateAt time.Time `json:"activateAt"`
	// NotAfter is when it expires and leaves the bundle.
	NotAfter time.Time `json:"notAfter"`

	// Parsed forms, filled by decodeState and by the code that creates
	// the record.
	cert      *x509.Certificate
	crossCert *x509.Certificate
	signer    crypto.Signer
}

// encode serialises s.
func (s *state) encode() ([]byte, error) {
	doc, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("ca: encode state: %w", err)
	}
	return doc, nil
}

// decodeState parses and checks a stored document: unknown fields, a
// version this code does not know, a trust domain other than want,
// certificates or keys that do not parse or do not belong together are all
// errors, and none of them is repaired silently.
func decodeState(doc []byte, want string) (*state, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.DisallowUnknownFields()
	var s state
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("ca: stored state does not parse: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("ca: stored state has data after the document")
	}
	if s.Version != stateVersion {
		return nil, fmt.Errorf("ca: stored state has version %d; this kzero reads version %d", s.Version, stateVersion)
	}
	if s.TrustDomain != want {
		return nil, fmt.Errorf("ca: stored state is for trust domain %q, not %q: point the CA at the right store or trust domain", s.TrustDomain, want)
	}
	ids := map[string]string{}
	check := func(list string, rs []*record, isCA bool) error {
		for i, r := range rs {
			if r == nil {
				return fmt.Errorf("ca: stored state: %s[%d]: empty record", list, i)
			}
			if err := r.parse(isCA); err != nil {
				return fmt.Errorf("ca: stored state: %s[%d]: %w", list, i, err)
			}
			if prev, dup := ids[r.ID]; dup {
				return fmt.Errorf("ca: stored state: %s[%d]: id %q is also in %s", list, i, r.ID, prev)
			}
			ids[r.ID] = list
		}
		return nil
	}
	if err := check("roots", s.Roots, true); err != nil {
		return nil, err
	}
	if err := check("issuers", s.Issuers, true); err != nil {
		return nil, err
	}
	if err := check("jwtKeys", s.JWTKeys, false); err != nil {
		return nil, err
	}
	for i, r := range s.Roots {
		if r.crossCert == nil {
			continue
		}
		if signedByRoot(r.crossCert, s.Roots) == nil {
			return nil, fmt.Errorf("ca: stored state: roots[%d]: cross-signed certificate of %q is not signed by a root in the state", i, r.ID)
		}
	}
	for i, r := range s.Issuers {
		p := find(s.Roots, r.Parent)
		if p == nil {
			return nil, fmt.Errorf("ca: stored state: issuers[%d]: parent root %q is not in the state", i, r.Parent)
		}
		if err := r.cert.CheckSignatureFrom(p.cert); err != nil {
			return nil, fmt.Errorf("ca: stored state: issuers[%d]: not signed by root %q: %w", i, r.Parent, err)
		}
		if r.NotAfter.After(p.NotAfter) {
			return nil, fmt.Errorf("ca: stored state: issuers[%d]: %q outlives its root %q", i, r.ID, r.Parent)
		}
	}
	return &s, nil
}

// parse fills the parsed forms of r and checks they belong together.
func (r *record) parse(isCA bool) error {
	if r.ID == "" {
		return fmt.Errorf("empty id")
	}
	key, err := x509.ParsePKCS8PrivateKey(r.Key)
	if err != nil {
		return fmt.Errorf("key of %q does not parse: %w", r.ID, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return fmt.Errorf("key of %q is a %T, not a signing key", r.ID, key)
	}
	r.signer = signer
	if !r.ActivateAt.Before(r.NotAfter) || r.ActivateAt.Before(r.Created) {
		return fmt.Errorf("%q: times out of order: created %s, activateAt %s, notAfter %s", r.ID, r.Created, r.ActivateAt, r.NotAfter)
	}
	if !isCA {
		if _, err := algorithmOf(signer.Public()); err != nil {
			return fmt.Errorf("key of %q: %w", r.ID, err)
		}
		return nil
	}
	r.cert, err = x509.ParseCertificate(r.Cert)
	if err != nil {
		return fmt.Errorf("certificate of %q does not parse: %w", r.ID, err)
	}
	if !r.cert.IsCA {
		return fmt.Errorf("certificate of %q is not a CA", r.ID)
	}
	if !publicKeysEqual(r.cert.PublicKey, signer.Public()) {
		return fmt.Errorf("key of %q does not match its certificate", r.ID)
	}
	if !r.cert.NotAfter.Equal(r.NotAfter) {
		return fmt.Errorf("%q: notAfter %s differs from its certificate's %s", r.ID, r.NotAfter, r.cert.NotAfter)
	}
	if len(r.CrossCert) > 0 {
		r.crossCert, err = x509.ParseCertificate(r.CrossCert)
		if err != nil {
			return fmt.Errorf("cross-signed certificate of %q does not parse: %w", r.ID, err)
		}
		if !publicKeysEqual(r.crossCert.PublicKey, signer.Public()) {
			return fmt.Errorf("cross-signed certificate of %q is for another key", r.ID)
		}
	}
	return nil
}

// signedByRoot returns the root of rs whose key signed cert, if any.
func signedByRoot(cert *x509.Certificate, rs []*record) *record {
	for _, r := range rs {
		if cert.CheckSignatureFrom(r.cert) == nil {
			return r
		}
	}
	return nil
}

// publicKeysEqual reports whether two public keys are the same key.
func publicKeysEqual(a, b crypto.PublicKey) bool {
	ae, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ae.Equal(b)
}
