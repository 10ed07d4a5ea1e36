package agent

import (
	"errors"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// bundleSource gives the X.509 authorities that verify the authority and
// the agent's SVID: those of BundleFile, read anew every time, and those of
// the bundle last fetched from the authority, and ClientConfig.Authorities.
type bundleSource struct{ c *Client }

// GetX509BundleForTrustDomain implements x509bundle.Source.
func (s bundleSource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	c := s.c
	if td != c.cfg.TrustDomain {
		return nil, fmt.Errorf("agent: no bundle for trust domain %s, only %s", td.Name(), c.cfg.TrustDomain.Name())
	}
	b := x509bundle.New(td)
	file, fileErr := loadBundle(td, c.cfg.BundleFile)
	if fileErr == nil {
		for _, a := range file.X509Authorities() {
			b.AddX509Authority(a)
		}
	}
	if c.cfg.Authorities != nil {
		for _, a := range c.cfg.Authorities() {
			b.AddX509Authority(a)
		}
	}
	c.mu.Lock()
	fetched := c.fetched
	c.mu.Unlock()
	if fetched != nil {
		for _, a := range fetched.X509Authorities() {
			b.AddX509Authority(a)
		}
	}
	if b.Empty() {
		if fileErr == nil {
			fileErr = errors.New("no certificate in it")
		}
		return nil, fmt.Errorf("agent: no X.509 authority of %s to verify the authority with: the bundle file does not load (%w) and no bundle has been fetched yet", td.Name(), fileErr)
	}
	return b, nil
}

// svidSource gives the agent's X.509-SVID as the client certificate.
type svidSource struct{ c *Client }

// GetX509SVID implements x509svid.Source.
func (s svidSource) GetX509SVID() (*x509svid.SVID, error) {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	if s.c.svid == nil {
		return nil, ErrNotAttested
	}
	return s.c.svid, nil
}

// loadBundle reads the X.509 authorities (PEM) of the bundle file at
// path, of at most maxBundleFile bytes.
func loadBundle(td spiffeid.TrustDomain, path string) (*x509bundle.Bundle, error) {
	pemBytes, err := readFile(path, maxBundleFile)
	if err != nil {
		return nil, err
	}
	return x509bundle.Parse(td, pemBytes)
}
