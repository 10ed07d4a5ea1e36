package ca_test

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"testing"

	"kzero.dev/kzero/internal/ca"
)

// BenchmarkIssueX509SVID is the whole issuance path with every check: the
// ID, the TTL, parsing the CSR and verifying its signature (the proof of
// possession), signing, verifying that signature against the issuing CA
// (inside x509.CreateCertificate) and parsing the result. Run it beside
// BenchmarkECDSAP256Sign: their ratio is what issuing costs over the one
// signature it cannot avoid.
func BenchmarkIssueX509SVID(b *testing.B) {
	c := newCA(b, ca.Config{})
	req := ca.X509Request{ID: mustID(b, "spiffe://cluster.local/ns/bench/sa/app"), CSR: csrFor(b, p256(b), nil)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.IssueX509SVID(req); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "svids/s")
}

// BenchmarkECDSAP256Sign is one raw ECDSA P-256 signature over a SHA-256
// digest: the floor under BenchmarkIssueX509SVID.
func BenchmarkECDSAP256Sign(b *testing.B) {
	key := p256(b)
	digest := sha256.Sum256([]byte("kzero"))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ecdsa.SignASN1(rand.Reader, key, digest[:]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkECDSAP256Verify is one raw ECDSA P-256 verification; issuing
// does two (the CSR's and its own signature's).
func BenchmarkECDSAP256Verify(b *testing.B) {
	key := p256(b)
	digest := sha256.Sum256([]byte("kzero"))
	sig, err := ecdsa.SignASN1(rand.Reader, key, digest[:])
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if !ecdsa.VerifyASN1(&key.PublicKey, digest[:], sig) {
			b.Fatal("verify failed")
		}
	}
}

func BenchmarkIssueJWTSVID(b *testing.B) {
	c := newCA(b, ca.Config{})
	req := ca.JWTRequest{ID: mustID(b, "spiffe://cluster.local/ns/bench/sa/app"), Audience: []string{"peer"}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.IssueJWTSVID(req); err != nil {
			b.Fatal(err)
		}
	}
}
