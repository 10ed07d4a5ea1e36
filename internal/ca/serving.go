package ca

import (
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// ServingRequest asks for a TLS serving certificate for one of kzero's own
// endpoints (the authority's admission webhook), which kube-apiserver
// reaches by DNS name or IP address, not by SPIFFE ID.
type ServingRequest struct {
	// DNSNames are the server's names: at least one name or IP is
	// required. Wildcards are refused.
	DNSNames []string
	// IPs are the server's addresses, for a server reached by a URL with
	// an IP address.
	IPs []netip.Addr
	// PublicKey is the server's key, made by the caller, who keeps the
	// private key: the CA never sees it.
	PublicKey crypto.PublicKey
	// TTL is the lifetime asked for; zero means the configured
	// X509SVIDMaxTTL, which is also the most it may be.
	TTL time.Duration
}

// ServingCertificate is an issued serving certificate.
type ServingCertificate struct {
	// Chain is the leaf then the certificates that link it to a root, DER.
	Chain [][]byte
	// Certificates are the parsed forms of Chain.
	Certificates []*x509.Certificate
	// NotBefore and NotAfter are the leaf's validity.
	NotBefore, NotAfter time.Time
}

// IssueServingCertificate signs a TLS serving certificate with the active
// issuing CA: DNS and IP subject alternative names, no URI, not a CA, key
// usage digitalSignature (critical), extended key usage serverAuth only.
// It is not an X.509-SVID: it carries no SPIFFE ID, so go-spiffe refuses it
// as one, and it cannot authenticate a client. Its lifetime is bounded by
// the X.509-SVID maximum, so that rotation keeps its issuing CA in the
// bundle for as long as it is valid, and it never outlives that CA. Every
// refusal is a *RequestError.
func (c *CA) IssueServingCertificate(req ServingRequest) (*ServingCertificate, error) {
	if len(req.DNSNames) == 0 && len(req.IPs) == 0 {
		return nil, refuse(ErrInvalidCSR, "a serving certificate needs at least one DNS name or IP address")
	}
	for _, n := range req.DNSNames {
		if err := checkDNSName(n); err != nil {
			return nil, err
		}
	}
	for _, ip := range req.IPs {
		if !ip.IsValid() || ip.Zone() != "" {
			return nil, refuse(ErrInvalidCSR, "IP address %q is not an IPv4 or IPv6 address without a zone", ip)
		}
	}
	if err := checkSubjectKey(req.PublicKey); err != nil {
		return nil, err
	}
	ttl, err := checkTTL(req.TTL, c.cfg.X509SVIDMaxTTL, c.cfg.X509SVIDMaxTTL)
	if err != nil {
		return nil, err
	}
	subject := pkix.Name{Organization: []string{"kzero"}}
	if len(req.DNSNames) > 0 {
		subject.CommonName = req.DNSNames[0]
	}
	tmpl := &x509.Certificate{
		Subject:     subject,
		DNSNames:    req.DNSNames,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, ip := range req.IPs {
		tmpl.IPAddresses = append(tmpl.IPAddresses, ip.Unmap().AsSlice())
	}
	names := append(append([]string{}, req.DNSNames...), ipStrings(req.IPs)...)
	chain, certs, err := c.signLeaf(tmpl, req.PublicKey, ttl, fmt.Sprintf("serving certificate for %v", names))
	if err != nil {
		return nil, err
	}
	return &ServingCertificate{Chain: chain, Certificates: certs, NotBefore: certs[0].NotBefore, NotAfter: certs[0].NotAfter}, nil
}

// checkDNSName accepts a DNS name of letters, digits, hyphens and dots,
// with no wildcard and no empty label.
func checkDNSName(n string) error {
	if n == "" || len(n) > 253 {
		return refuse(ErrInvalidCSR, "DNS name %q is empty or over 253 characters", n)
	}
	for label := range strings.SplitSeq(n, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return refuse(ErrInvalidCSR, "DNS name %q has an empty, over-long or hyphen-edged label", n)
		}
		for _, r := range label {
			if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' {
				return refuse(ErrInvalidCSR, "DNS name %q may hold only lower-case letters, digits, hyphens and dots (no wildcard)", n)
			}
		}
	}
	return nil
}

func ipStrings(ips []netip.Addr) []string {
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = ip.String()
	}
	return out
}
