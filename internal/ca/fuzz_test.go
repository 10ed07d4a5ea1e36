package ca

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"net/url"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// The seed corpus of every fuzz target lives in testdata/fuzz/<target>/ and
// runs with every `go test`. `go test -run TestWriteFuzzSeeds -write-seeds`
// writes it again.
var writeSeeds = flag.Bool("write-seeds", false, "write the fuzz seed corpus to testdata/fuzz")

// FuzzParseCSR: arbitrary bytes as a CSR never panic, and anything accepted
// has a verified signature and an accepted key.
func FuzzParseCSR(f *testing.F) {
	f.Fuzz(func(t *testing.T, der []byte) {
		csr, err := parseCSR(der)
		if err != nil {
			var re *RequestError
			if !errors.As(err, &re) {
				t.Fatalf("refusal is a %T, not a *RequestError: %v", err, err)
			}
			return
		}
		if err := csr.CheckSignature(); err != nil {
			t.Fatalf("accepted a CSR whose signature fails: %v", err)
		}
		if err := checkSubjectKey(csr.PublicKey); err != nil {
			t.Fatalf("accepted a CSR with a refused key: %v", err)
		}
		_ = checkCSRNames(csr, spiffeIDForFuzz)
	})
}

// FuzzCheckProofOfPossession: arbitrary keys, proofs and UIDs never panic,
// and anything accepted verifies.
func FuzzCheckProofOfPossession(f *testing.F) {
	f.Fuzz(func(t *testing.T, pkix, proof []byte, uid string) {
		pub, err := checkProofOfPossession(pkix, proof, uid)
		if err != nil {
			var re *RequestError
			if !errors.As(err, &re) {
				t.Fatalf("refusal is a %T, not a *RequestError: %v", err, err)
			}
			return
		}
		if err := checkSubjectKey(pub); err != nil {
			t.Fatalf("accepted a refused key: %v", err)
		}
	})
}

// FuzzDecodeState: a stored document never panics the CA, and what it
// accepts encodes and decodes again to the same.
func FuzzDecodeState(f *testing.F) {
	f.Fuzz(func(t *testing.T, doc []byte) {
		s, err := decodeState(doc, "cluster.local")
		if err != nil {
			return
		}
		again, err := s.encode()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := decodeState(again, "cluster.local"); err != nil {
			t.Fatalf("re-encoded state does not decode: %v", err)
		}
	})
}

// FuzzValidateJWTSVID: any token string is refused or validated without a
// panic, and refusals are typed.
func FuzzValidateJWTSVID(f *testing.F) {
	c := testCA(f, nil)
	f.Fuzz(func(t *testing.T, token string) {
		if _, err := c.ValidateJWTSVID(token, "fuzz"); err != nil {
			var re *RequestError
			if !errors.As(err, &re) {
				t.Fatalf("refusal is a %T, not a *RequestError: %v", err, err)
			}
		}
	})
}

// FuzzParseID: ParseID accepts exactly what go-spiffe accepts and the
// result prints back as the input.
func FuzzParseID(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseID(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidID) {
				t.Fatalf("refusal is not ErrInvalidID: %v", err)
			}
			return
		}
		if id.String() != s {
			t.Fatalf("ParseID(%q).String() = %q", s, id.String())
		}
	})
}

var spiffeIDForFuzz = testTD.ID()

// TestWriteFuzzSeeds writes the seed corpus when asked with -write-seeds.
func TestWriteFuzzSeeds(t *testing.T) {
	if !*writeSeeds {
		t.Skip("run with -write-seeds to write testdata/fuzz")
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr := func(tmpl *x509.CertificateRequest) []byte {
		der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	u, _ := url.Parse("spiffe://cluster.local/ns/a/sa/b")
	badSig := csr(&x509.CertificateRequest{})
	badSig[len(badSig)-3] ^= 0xff
	write(t, "FuzzParseCSR", map[string]any{
		"empty":        []byte{},
		"stub":         csr(&x509.CertificateRequest{}),
		"with-uri":     csr(&x509.CertificateRequest{URIs: []*url.URL{u}}),
		"with-dns":     csr(&x509.CertificateRequest{DNSNames: []string{"a.example"}}),
		"bad-sig":      badSig,
		"not-der":      []byte("-----BEGIN CERTIFICATE REQUEST-----\n"),
		"truncated":    csr(&x509.CertificateRequest{})[:40],
		"seq-of-zeros": []byte{0x30, 0x03, 0x02, 0x01, 0x00},
	})

	pkixDER, _ := x509.MarshalPKIXPublicKey(key.Public())
	digest := sha256.Sum256([]byte("pod-uid"))
	proof, _ := ecdsa.SignASN1(rand.Reader, key, digest[:])
	writeArgs(t, "FuzzCheckProofOfPossession", map[string][]any{
		"valid":     {pkixDER, proof, "pod-uid"},
		"other-uid": {pkixDER, proof, "other"},
		"empty":     {[]byte{}, []byte{}, ""},
		"garbage":   {[]byte("key"), []byte("sig"), "x"},
	})

	c := testCA(t, nil)
	doc, err := c.state.encode()
	if err != nil {
		t.Fatal(err)
	}
	write(t, "FuzzDecodeState", map[string]any{
		"valid":         doc,
		"empty-object":  []byte("{}"),
		"version-only":  []byte(`{"version":1,"trustDomain":"cluster.local"}`),
		"wrong-version": []byte(`{"version":9,"trustDomain":"cluster.local"}`),
		"bad-key":       []byte(`{"version":1,"trustDomain":"cluster.local","jwtKeys":[{"id":"k","key":"AAAA"}]}`),
	})

	jwt, err := c.IssueJWTSVID(JWTRequest{ID: spiffeid.RequireFromString("spiffe://cluster.local/w"), Audience: []string{"fuzz"}, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	write(t, "FuzzValidateJWTSVID", map[string]any{
		"valid":    jwt.Token,
		"empty":    "",
		"two-dots": "..",
		"none-alg": "eyJhbGciOiJub25lIn0.eyJzdWIiOiJzcGlmZmU6Ly9jbHVzdGVyLmxvY2FsL2EifQ.",
	})
	write(t, "FuzzParseID", map[string]any{
		"good":      "spiffe://cluster.local/ns/a/sa/b",
		"root":      "spiffe://cluster.local",
		"dots":      "spiffe://cluster.local/../a",
		"upper":     "spiffe://Cluster.local/a",
		"other":     "https://cluster.local/a",
		"trailing":  "spiffe://cluster.local/a/",
		"percent":   "spiffe://cluster.local/a%20b",
		"userinfo":  "spiffe://u@cluster.local/a",
		"port":      "spiffe://cluster.local:8443/a",
		"empty-seg": "spiffe://cluster.local//a",
	})
}

// write stores one-argument seeds in the go test fuzz v1 format.
func write(t *testing.T, target string, seeds map[string]any) {
	args := map[string][]any{}
	for name, v := range seeds {
		args[name] = []any{v}
	}
	writeArgs(t, target, args)
}

// writeArgs stores seeds of several arguments in the go test fuzz v1 format.
func writeArgs(t *testing.T, target string, seeds map[string][]any) {
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, args := range seeds {
		doc := "go test fuzz v1\n"
		for _, v := range args {
			switch v := v.(type) {
			case []byte:
				doc += fmt.Sprintf("[]byte(%s)\n", strconv.Quote(string(v)))
			case string:
				doc += fmt.Sprintf("string(%s)\n", strconv.Quote(v))
			}
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
