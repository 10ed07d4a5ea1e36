package ca_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"kzero.dev/kzero/internal/ca"
)

func TestIssueX509SVIDVerifiesWithGoSPIFFE(t *testing.T) {
	c := newCA(t, ca.Config{})
	id := mustID(t, "spiffe://cluster.local/ns/shop/sa/cart")
	keys := map[string]func() (crypto.Signer, error){
		"ECDSA P-256": func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) },
		"ECDSA P-384": func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P384(), rand.Reader) },
		"ECDSA P-521": func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P521(), rand.Reader) },
		"Ed25519": func() (crypto.Signer, error) {
			_, k, err := ed25519.GenerateKey(rand.Reader)
			return k, err
		},
		"RSA 3072": func() (crypto.Signer, error) { return rsa.GenerateKey(rand.Reader, 3072) },
	}
	bundle := publishedBundle(t, c)
	for name, gen := range keys {
		t.Run(name, func(t *testing.T) {
			key, err := gen()
			if err != nil {
				t.Fatal(err)
			}
			svid, err := c.IssueX509SVID(ca.X509Request{ID: id, CSR: csrFor(t, key, nil), TTL: 10 * time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			gotID, _, err := x509svid.Verify(svid.Certificates, bundle)
			if err != nil {
				t.Fatalf("go-spiffe x509svid.Verify: %v", err)
			}
			if gotID != id {
				t.Errorf("verified ID = %s, want %s", gotID, id)
			}
			// go-spiffe's own SVID parser accepts chain and key together.
			keyDER, err := x509.MarshalPKCS8PrivateKey(key)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := x509svid.ParseRaw(bytes.Join(svid.Chain, nil), keyDER); err != nil {
				t.Fatalf("go-spiffe x509svid.ParseRaw: %v", err)
			}
			checkLeafPerStandard(t, svid.Certificates[0], id)
			if got := svid.NotAfter.Sub(svid.NotBefore); got != 10*time.Minute+ca.DefaultBackdate {
				t.Errorf("lifetime = %s, want 10m plus the %s backdate", got, ca.DefaultBackdate)
			}
			if !svid.Certificates[0].PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(key.Public()) {
				t.Error("leaf certifies another key than the CSR's")
			}
		})
	}
}

// checkLeafPerStandard asserts each rule of the SPIFFE X509-SVID standard
// for a leaf, reading the raw extensions where Go's parser hides them.
func checkLeafPerStandard(t *testing.T, leaf *x509.Certificate, id interface{ String() string }) {
	t.Helper()
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != id.String() {
		t.Errorf("URI SANs = %v, want exactly [%s]", leaf.URIs, id)
	}
	if len(leaf.DNSNames)+len(leaf.IPAddresses)+len(leaf.EmailAddresses) != 0 {
		t.Errorf("leaf has other SANs: %v %v %v", leaf.DNSNames, leaf.IPAddresses, leaf.EmailAddresses)
	}
	if !leaf.BasicConstraintsValid || leaf.IsCA {
		t.Errorf("basic constraints: valid=%v CA=%v, want present and CA false", leaf.BasicConstraintsValid, leaf.IsCA)
	}
	if leaf.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("key usage = %b, want digitalSignature only", leaf.KeyUsage)
	}
	wantEKU := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	if len(leaf.ExtKeyUsage) != 2 || leaf.ExtKeyUsage[0] != wantEKU[0] || leaf.ExtKeyUsage[1] != wantEKU[1] {
		t.Errorf("extended key usage = %v, want serverAuth, clientAuth", leaf.ExtKeyUsage)
	}
	for _, ext := range leaf.Extensions {
		if ext.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 15}) && !ext.Critical {
			t.Error("key usage extension is not critical")
		}
	}
}

func TestIssueX509SVIDChainIsCertificateChainPEM(t *testing.T) {
	c := newCA(t, ca.Config{})
	svid, err := c.IssueX509SVID(ca.X509Request{ID: mustID(t, "spiffe://cluster.local/ns/a/sa/b"), CSR: csrFor(t, p256(t), nil)})
	if err != nil {
		t.Fatal(err)
	}
	rest := svid.ChainPEM()
	for i := range svid.Chain {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil || b.Type != "CERTIFICATE" || !bytes.Equal(b.Bytes, svid.Chain[i]) {
			t.Fatalf("PEM block %d does not hold chain[%d]", i, i)
		}
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("data after the chain: %q", rest)
	}
	if got := svid.NotAfter.Sub(svid.NotBefore); got != ca.DefaultX509SVIDTTL+ca.DefaultBackdate {
		t.Errorf("default lifetime = %s, want %s plus backdate", got, ca.DefaultX509SVIDTTL)
	}
}

func TestIssueX509SVIDRefusals(t *testing.T) {
	c := newCA(t, ca.Config{})
	id := mustID(t, "spiffe://cluster.local/ns/shop/sa/cart")
	good := p256(t)
	rsa2048, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	badSig := csrFor(t, good, nil)
	badSig[len(badSig)-5] ^= 0xff // inside the signature
	caBit, err := asn1.Marshal(struct{ IsCA bool }{true})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		req     ca.X509Request
		wantErr string
		kind    error
	}{
		{"no CSR", ca.X509Request{ID: id}, "ca: the request has no CSR: send a PKCS#10 request signed with the key to certify, or the public key with a proof of possession", ca.ErrInvalidCSR},
		{"garbage CSR", ca.X509Request{ID: id, CSR: []byte("-----BEGIN CERTIFICATE REQUEST-----")},
			"ca: the CSR does not parse as a DER PKCS#10 certificate request: send the DER bytes, not PEM or text", ca.ErrInvalidCSR},
		{"signature fails", ca.X509Request{ID: id, CSR: badSig},
			"ca: the CSR's signature does not verify with its public key (x509: ECDSA verification failure): sign the CSR with the private key it names", ca.ErrBadSignature},
		{"RSA 2048", ca.X509Request{ID: id, CSR: csrFor(t, rsa2048, nil)},
			"ca: RSA key of 2048 bits is not accepted: use ECDSA P-256 (recommended), P-384, P-521, Ed25519, or RSA 3072 or 4096", ca.ErrUnsupportedKey},
		{"P-224", ca.X509Request{ID: id, CSR: csrFor(t, p224, nil)},
			"ca: ECDSA curve P-224 is not accepted: use ECDSA P-256 (recommended), P-384, P-521, Ed25519, or RSA 3072 or 4096", ca.ErrUnsupportedKey},
		{"CA bit", ca.X509Request{ID: id, CSR: csrFor(t, good, &x509.CertificateRequest{
			ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: caBit}}})},
			"ca: the CSR asks for a CA certificate: X.509-SVIDs are leaves, remove the CA bit", ca.ErrCARequested},
		{"DNS SAN", ca.X509Request{ID: id, CSR: csrFor(t, good, &x509.CertificateRequest{DNSNames: []string{"cart.shop.svc"}})},
			`ca: the CSR names DNS SAN "cart.shop.svc": an X.509-SVID from this CA carries only its SPIFFE ID, remove the DNS names`, ca.ErrExtraSAN},
		{"IP SAN", ca.X509Request{ID: id, CSR: csrFor(t, good, &x509.CertificateRequest{IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}})},
			"ca: the CSR names IP SAN 127.0.0.1: an X.509-SVID from this CA carries only its SPIFFE ID, remove the IP addresses", ca.ErrExtraSAN},
		{"email SAN", ca.X509Request{ID: id, CSR: csrFor(t, good, &x509.CertificateRequest{EmailAddresses: []string{"a@b.c"}})},
			`ca: the CSR names email SAN "a@b.c": an X.509-SVID from this CA carries only its SPIFFE ID, remove the email addresses`, ca.ErrExtraSAN},
		{"two URI SANs", ca.X509Request{ID: id, CSR: csrFor(t, good, &x509.CertificateRequest{URIs: []*url.URL{id.URL(), mustURL("spiffe://cluster.local/other")}})},
			"ca: the CSR names 2 URI SANs: an X.509-SVID has exactly one, its SPIFFE ID", ca.ErrExtraSAN},
		{"other SPIFFE ID in CSR", ca.X509Request{ID: id, CSR: csrFor(t, good, &x509.CertificateRequest{URIs: []*url.URL{mustURL("spiffe://cluster.local/ns/kube-system/sa/admin")}})},
			"ca: the CSR names spiffe://cluster.local/ns/kube-system/sa/admin but the request is for spiffe://cluster.local/ns/shop/sa/cart: name spiffe://cluster.local/ns/shop/sa/cart or no SAN at all", ca.ErrExtraSAN},
		{"URI SAN not a SPIFFE ID", ca.X509Request{ID: id, CSR: csrFor(t, good, &x509.CertificateRequest{URIs: []*url.URL{mustURL("https://cluster.local/x")}})},
			`ca: the CSR's URI SAN "https://cluster.local/x" is not a SPIFFE ID (scheme is missing or invalid): name spiffe://cluster.local/ns/shop/sa/cart or no SAN at all`, ca.ErrInvalidID},
		{"no ID", ca.X509Request{CSR: csrFor(t, good, nil)}, "ca: the request names no SPIFFE ID", ca.ErrInvalidID},
		{"ID outside the trust domain", ca.X509Request{ID: mustID(t, "spiffe://evil.example/ns/shop/sa/cart"), CSR: csrFor(t, good, nil)},
			`ca: spiffe://evil.example/ns/shop/sa/cart is outside trust domain "cluster.local": this CA certifies only spiffe://cluster.local/... IDs`, ca.ErrForeignTrustDomain},
		{"ID without a path", ca.X509Request{ID: mustID(t, "spiffe://cluster.local"), CSR: csrFor(t, good, nil)},
			"ca: spiffe://cluster.local has no path: a workload's SPIFFE ID needs one, such as /ns/<namespace>/sa/<service-account>", ca.ErrInvalidID},
		{"TTL over the maximum", ca.X509Request{ID: id, CSR: csrFor(t, good, nil), TTL: 25 * time.Hour},
			"ca: TTL 25h0m0s is over the maximum 24h0m0s: ask for 24h0m0s or less", ca.ErrTTLTooLong},
		{"negative TTL", ca.X509Request{ID: id, CSR: csrFor(t, good, nil), TTL: -time.Second},
			"ca: TTL -1s is negative: ask for a positive TTL, or zero for the default 1h0m0s", ca.ErrInvalidTTL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svid, err := c.IssueX509SVID(tc.req)
			if err == nil {
				t.Fatalf("issued %v, want error", svid.ID)
			}
			if err.Error() != tc.wantErr {
				t.Errorf("error =\n  %s\nwant\n  %s", err, tc.wantErr)
			}
			if !errorIs(err, tc.kind) {
				t.Errorf("errors.Is(err, %v) = false", tc.kind)
			}
			var re *ca.RequestError
			if !asRequestError(err, &re) {
				t.Errorf("error is a %T, want *ca.RequestError", err)
			}
		})
	}
}

func TestParseID(t *testing.T) {
	for _, tc := range []struct{ in, wantErr string }{
		{"spiffe://cluster.local/ns/a/sa/b", ""},
		{"spiffe://Cluster.local/ns/a", `ca: "spiffe://Cluster.local/ns/a" is not a SPIFFE ID: trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores; the form is spiffe://<trust-domain>/<path>`},
		{"spiffe://cluster.local/ns/../x", `ca: "spiffe://cluster.local/ns/../x" is not a SPIFFE ID: path cannot contain dot segments; the form is spiffe://<trust-domain>/<path>`},
		{"https://cluster.local/x", `ca: "https://cluster.local/x" is not a SPIFFE ID: scheme is missing or invalid; the form is spiffe://<trust-domain>/<path>`},
		{"", `ca: "" is not a SPIFFE ID: cannot be empty; the form is spiffe://<trust-domain>/<path>`},
	} {
		_, err := ca.ParseID(tc.in)
		got := ""
		if err != nil {
			got = err.Error()
			if !errorIs(err, ca.ErrInvalidID) {
				t.Errorf("ParseID(%q): not ErrInvalidID", tc.in)
			}
		}
		if got != tc.wantErr {
			t.Errorf("ParseID(%q) error =\n  %s\nwant\n  %s", tc.in, got, tc.wantErr)
		}
	}
}
