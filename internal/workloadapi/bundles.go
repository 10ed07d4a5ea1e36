package workloadapi

import (
	"fmt"
	"sync"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Bundles holds the trust bundles the server hands out: its own trust
// domain's and, for federation, other trust domains', one per trust
// domain. Every change is pushed to the streams that carry bundles. It is
// safe for concurrent use; the zero value is empty and ready.
type Bundles struct {
	mu      sync.Mutex
	cur     *bundleSet    // guarded by mu; replaced, never changed in place
	changed chan struct{} // guarded by mu; closed and replaced by every change
}

// bundleSet is one state of Bundles, with the encodings every response
// needs made once. Nothing in it changes after it is built.
type bundleSet struct {
	bundles map[spiffeid.TrustDomain]*spiffebundle.Bundle
	// x509 maps the SPIFFE ID of each trust domain with X.509 authorities
	// (spiffe://<name>) to them, DER, concatenated.
	x509 map[string][]byte
	// jwks maps the SPIFFE ID of each trust domain with JWT authorities to
	// them, as a JWKS document.
	jwks map[string][]byte
	// jwt is the JWT authorities, for validating JWT-SVIDs.
	jwt *jwtbundle.Set
}

// Set replaces every bundle with bundles: a trust domain whose bundle is
// left out is no longer trusted. Streams are told only if something
// changed. Of two bundles of one trust domain, the last wins; nil ones are
// skipped. Set keeps copies, so the caller may change its bundles after.
func (b *Bundles) Set(bundles ...*spiffebundle.Bundle) error {
	next, err := newBundleSet(bundles)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lazyInit()
	if b.cur.equal(next) {
		return nil
	}
	b.cur = next
	close(b.changed)
	b.changed = make(chan struct{})
	return nil
}

// GetX509BundleForTrustDomain implements x509bundle.Source with the
// bundles the server hands out, from memory: the mesh verifies its peers
// with the same authorities the workloads get.
func (b *Bundles) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	set, _ := b.snapshot()
	sb, ok := set.bundles[td]
	if !ok {
		return nil, fmt.Errorf("workloadapi: no bundle of trust domain %s yet", td.Name())
	}
	return sb.GetX509BundleForTrustDomain(td)
}

// snapshot returns the current bundles and a channel closed when they
// change.
func (b *Bundles) snapshot() (*bundleSet, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lazyInit()
	return b.cur, b.changed
}

func (b *Bundles) lazyInit() {
	if b.changed == nil {
		b.cur, _ = newBundleSet(nil)
		b.changed = make(chan struct{})
	}
}

func newBundleSet(bundles []*spiffebundle.Bundle) (*bundleSet, error) {
	s := &bundleSet{
		bundles: make(map[spiffeid.TrustDomain]*spiffebundle.Bundle, len(bundles)),
		x509:    make(map[string][]byte, len(bundles)),
		jwks:    make(map[string][]byte, len(bundles)),
		jwt:     jwtbundle.NewSet(),
	}
	for _, in := range bundles {
		if in == nil {
			continue
		}
		bundle := in.Clone()
		td := bundle.TrustDomain()
		s.bundles[td] = bundle
		delete(s.x509, td.IDString())
		delete(s.jwks, td.IDString())
		var der []byte
		for _, c := range bundle.X509Authorities() {
			der = append(der, c.Raw...)
		}
		if len(der) > 0 {
			s.x509[td.IDString()] = der
		}
		jb := bundle.JWTBundle()
		if len(jb.JWTAuthorities()) > 0 {
			doc, err := jb.Marshal()
			if err != nil {
				return nil, fmt.Errorf("workloadapi: JWT authorities of %q: %w", td.Name(), err)
			}
			s.jwks[td.IDString()] = doc
		}
		s.jwt.Add(jb)
	}
	return s, nil
}

func (s *bundleSet) equal(o *bundleSet) bool {
	if len(s.bundles) != len(o.bundles) {
		return false
	}
	for td, b := range s.bundles {
		if ob, ok := o.bundles[td]; !ok || !b.Equal(ob) {
			return false
		}
	}
	return true
}

// federated returns the X.509 authorities of every trust domain but td,
// or nil if there are none.
func (s *bundleSet) federated(td spiffeid.TrustDomain) map[string][]byte {
	var out map[string][]byte
	for id, der := range s.x509 {
		if id == td.IDString() {
			continue
		}
		if out == nil {
			out = make(map[string][]byte, len(s.x509))
		}
		out[id] = der
	}
	return out
}
