// Package svidtest gives tests a real CA of a trust domain and the
// X.509-SVIDs it issues, as the authority issues them, for TLS peers that
// verify each other for real. (catest cannot: the CA's own tests use it.)
package svidtest

import (
	"context"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"kzero.dev/kzero/internal/ca"
	"kzero.dev/kzero/internal/ca/catest"
)

// CA is a CA with its default schedule, in memory.
type CA struct {
	t  testing.TB
	CA *ca.CA
}

// New starts a CA of td.
func New(t testing.TB, td spiffeid.TrustDomain) *CA {
	t.Helper()
	c, err := ca.New(context.Background(), ca.Config{TrustDomain: td, Store: catest.NewMemStore(nil)})
	if err != nil {
		t.Fatal(err)
	}
	return &CA{t: t, CA: c}
}

// Bundle is the CA's X.509 bundle.
func (c *CA) Bundle() *x509bundle.Bundle { return c.CA.Bundle().X509Bundle() }

// SVID issues the X.509-SVID of /ns/<ns>/sa/<sa>, with a new P-256 key.
func (c *CA) SVID(ns, sa string) *x509svid.SVID {
	c.t.Helper()
	return c.SVIDFor(ns, sa, 0)
}

// SVIDFor issues the X.509-SVID of /ns/<ns>/sa/<sa> for ttl (0: the CA's
// default), with a new P-256 key.
func (c *CA) SVIDFor(ns, sa string, ttl time.Duration) *x509svid.SVID {
	c.t.Helper()
	id := spiffeid.RequireFromSegments(c.CA.Bundle().TrustDomain(), "ns", ns, "sa", sa)
	key, csr := catest.NewCSR(c.t)
	s, err := c.CA.IssueX509SVID(ca.X509Request{ID: id, CSR: csr, TTL: ttl})
	if err != nil {
		c.t.Fatal(err)
	}
	return &x509svid.SVID{ID: id, Certificates: s.Certificates, PrivateKey: key}
}
