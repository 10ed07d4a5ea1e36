package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"math/big"

	"filippo.io/edwards25519"
	"github.com/go-jose/go-jose/v4"
)

// newKey makes a private key of the CA's configured algorithm and returns
// it with its PKCS#8 encoding.
func newKey(alg KeyAlgorithm) (crypto.Signer, []byte, error) {
	var curve elliptic.Curve
	switch alg {
	case ECDSAP256:
		curve = elliptic.P256()
	case ECDSAP384:
		curve = elliptic.P384()
	default:
		return nil, nil, fmt.Errorf("ca: unknown key algorithm %q", alg)
	}
	key, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: encode key: %w", err)
	}
	return key, der, nil
}

// algorithmOf returns the JOSE algorithm that a JWT signing key uses.
func algorithmOf(pub crypto.PublicKey) (jose.SignatureAlgorithm, error) {
	k, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return "", fmt.Errorf("a %T key cannot sign JWT-SVIDs; use ECDSA", pub)
	}
	switch k.Curve {
	case elliptic.P256():
		return jose.ES256, nil
	case elliptic.P384():
		return jose.ES384, nil
	}
	return "", fmt.Errorf("ECDSA curve %s cannot sign JWT-SVIDs; use P-256 or P-384", k.Curve.Params().Name)
}

// checkSubjectKey accepts the public keys the CA certifies: those kubelet
// makes for pod certificates (RSA 3072 and 4096, ECDSA P-256, P-384 and
// P-521, Ed25519) and nothing weaker.
func checkSubjectKey(pub crypto.PublicKey) error {
	const hint = "use ECDSA P-256 (recommended), P-384, P-521, Ed25519, or RSA 3072 or 4096"
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return nil
		}
		return refuse(ErrUnsupportedKey, "ECDSA curve %s is not accepted: %s", k.Curve.Params().Name, hint)
	case ed25519.PublicKey:
		return checkEd25519(k, hint)
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n != 3072 && n != 4096 {
			return refuse(ErrUnsupportedKey, "RSA key of %d bits is not accepted: %s", n, hint)
		}
		return nil
	case nil:
		return refuse(ErrUnsupportedKey, "the request's public key is of a type this CA does not know: %s", hint)
	}
	return refuse(ErrUnsupportedKey, "%T keys are not accepted: %s", pub, hint)
}

// checkEd25519 refuses Ed25519 keys that are not valid points, and the
// points of small order: with those, a signature made without any private
// key verifies (R the identity, S zero), so possession proves nothing.
func checkEd25519(k ed25519.PublicKey, hint string) error {
	if len(k) != ed25519.PublicKeySize {
		return refuse(ErrUnsupportedKey, "Ed25519 key of %d bytes is not valid: %s", len(k), hint)
	}
	p, err := new(edwards25519.Point).SetBytes(k)
	if err != nil {
		return refuse(ErrUnsupportedKey, "Ed25519 key is not a point on the curve: %s", hint)
	}
	if new(edwards25519.Point).MultByCofactor(p).Equal(edwards25519.NewIdentityPoint()) == 1 {
		return refuse(ErrUnsupportedKey, "Ed25519 key is a point of small order, for which anyone can forge signatures: generate a real key")
	}
	return nil
}

// serialNumber returns a random positive 128-bit serial number.
func serialNumber(r io.Reader) (*big.Int, error) {
	var b [16]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return nil, fmt.Errorf("ca: read random serial number: %w", err)
	}
	b[0] &= 0x7f // positive, as RFC 5280 asks
	n := new(big.Int).SetBytes(b[:])
	if n.Sign() == 0 {
		n.SetInt64(1)
	}
	return n, nil
}

// randomID returns 32 hex characters from r, for record and key IDs.
func randomID(r io.Reader) (string, error) {
	var b [16]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", fmt.Errorf("ca: read random id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
