package ca_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"testing"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"kzero.dev/kzero/internal/ca"
)

// proofFor signs uid the way kubelet does for a v1beta1
// PodCertificateRequest's spec.proofOfPossession.
func proofFor(t testing.TB, key crypto.Signer, uid string) (pkix, proof []byte) {
	t.Helper()
	pkix, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte(uid))
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		proof, err = ecdsa.SignASN1(rand.Reader, k, digest[:])
	case *rsa.PrivateKey:
		proof, err = rsa.SignPSS(rand.Reader, k, crypto.SHA256, digest[:], nil)
	case ed25519.PrivateKey:
		proof = ed25519.Sign(k, []byte(uid))
	}
	if err != nil {
		t.Fatal(err)
	}
	return pkix, proof
}

func TestIssueX509SVIDWithProofOfPossession(t *testing.T) {
	c := newCA(t, ca.Config{})
	id := mustID(t, "spiffe://cluster.local/ns/shop/sa/cart")
	const uid = "0f5c3a2e-8b1d-4c6f-9a7e-2d4b6c8e0a1f"
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 3072)
	if err != nil {
		t.Fatal(err)
	}
	bundle := publishedBundle(t, c)
	for name, key := range map[string]crypto.Signer{"ECDSA P-256": p256(t), "Ed25519": edKey, "RSA 3072": rsaKey} {
		t.Run(name, func(t *testing.T) {
			pkix, proof := proofFor(t, key, uid)
			svid, err := c.IssueX509SVID(ca.X509Request{ID: id, PublicKey: pkix, ProofOfPossession: proof, PodUID: uid})
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := x509svid.Verify(svid.Certificates, bundle); err != nil {
				t.Fatalf("go-spiffe x509svid.Verify: %v", err)
			}
			checkLeafPerStandard(t, svid.Certificates[0], id)
		})
	}

	key := p256(t)
	pkix, proof := proofFor(t, key, uid)
	rsa2048, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	weakPKIX, weakProof := proofFor(t, rsa2048, uid)
	for _, tc := range []struct {
		name    string
		req     ca.X509Request
		wantErr string
		kind    error
	}{
		{"CSR and key both", ca.X509Request{ID: id, CSR: csrFor(t, key, nil), PublicKey: pkix, ProofOfPossession: proof, PodUID: uid},
			"ca: the request has both a CSR and a public key with a proof of possession: send one of them", ca.ErrInvalidProof},
		{"proof without key", ca.X509Request{ID: id, ProofOfPossession: proof, PodUID: uid},
			"ca: the proof of possession comes without its public key: send the PKIX public key too", ca.ErrInvalidProof},
		{"key without proof", ca.X509Request{ID: id, PublicKey: pkix, PodUID: uid},
			"ca: the public key comes without a proof of possession: sign the pod UID with the private key", ca.ErrInvalidProof},
		{"no pod UID", ca.X509Request{ID: id, PublicKey: pkix, ProofOfPossession: proof},
			"ca: the proof of possession names no pod UID: send the UID it signs", ca.ErrInvalidProof},
		{"key not PKIX", ca.X509Request{ID: id, PublicKey: []byte("key"), ProofOfPossession: proof, PodUID: uid},
			"ca: the public key does not parse as DER PKIX: send the DER bytes of a SubjectPublicKeyInfo", ca.ErrInvalidProof},
		{"proof over another pod", ca.X509Request{ID: id, PublicKey: pkix, ProofOfPossession: proof, PodUID: "another-pod"},
			`ca: the proof of possession does not verify with the public key over pod UID "another-pod": sign exactly the pod's UID with the private key`, ca.ErrBadSignature},
		{"RSA 2048", ca.X509Request{ID: id, PublicKey: weakPKIX, ProofOfPossession: weakProof, PodUID: uid},
			"ca: RSA key of 2048 bits is not accepted: use ECDSA P-256 (recommended), P-384, P-521, Ed25519, or RSA 3072 or 4096", ca.ErrUnsupportedKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.IssueX509SVID(tc.req)
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("error =\n  %v\nwant\n  %s", err, tc.wantErr)
			}
			if !errorIs(err, tc.kind) {
				t.Errorf("errors.Is(err, %v) = false", tc.kind)
			}
		})
	}
}
