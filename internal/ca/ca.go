package ca

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
)

// CA is the trust domain's certificate authority. It is safe for
// concurrent use: issuing reads an immutable snapshot and never waits for
// rotation.
type CA struct {
	cfg Config

	mu    sync.Mutex // serialises Rotate
	state *state     // guarded by mu; replaced, never changed in place

	snap atomic.Pointer[snapshot]
}

// snapshot is what issuing needs, built once per rotation.
type snapshot struct {
	issuers []*issuer // live issuing CAs, oldest first
	jwtKeys []*record // live JWT keys, oldest first
	bundle  *spiffebundle.Bundle
}

// issuer is an issuing CA ready to sign.
type issuer struct {
	rec *record
	// chain is what follows a leaf it signs: its own certificate and, under
	// a cross-signed root, that root's cross certificate.
	chain [][]byte
	// chainCerts are the parsed forms of chain.
	chainCerts []*x509.Certificate
}

// RotationReport says what a call to Rotate did.
type RotationReport struct {
	// Steps are the reasons of every change, in order; empty when nothing
	// was due.
	Steps []string
	// Sequence is the bundle's sequence number after the rotation.
	Sequence uint64
	// Next is when Rotate should run again.
	Next time.Time
}

// New loads the CA's state from cfg.Store, or makes a new root, issuing CA
// and JWT key when the store is empty, and rotates whatever is due. It
// refuses a store it cannot read or whose state does not check out: a CA
// must never replace its keys silently, or every workload would lose trust.
func New(ctx context.Context, cfg Config) (*CA, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	c := &CA{cfg: cfg}
	doc, err := cfg.Store.Load(ctx)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		c.state = &state{Version: stateVersion, TrustDomain: cfg.TrustDomain.Name()}
	case err != nil:
		return nil, fmt.Errorf("ca: cannot read the CA's store, refusing to start: %w", err)
	default:
		if c.state, err = decodeState(doc, cfg.TrustDomain.Name()); err != nil {
			return nil, err
		}
	}
	if _, err := c.Rotate(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// Rotate carries out whatever the schedule says is due now: drops expired
// CAs and keys from the bundle, publishes successors, activates. The new
// state is saved before anything new signs; if saving fails, the CA goes on
// with its old state and Rotate returns the error. Call it at the time
// RotationReport.Next (or Next) says, and at least every few minutes.
func (c *CA) Rotate(ctx context.Context) (RotationReport, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.cfg.Now()
	if err := c.checkClock(now); err != nil {
		return RotationReport{}, err
	}
	steps := plan(c.state, &c.cfg, now)
	next := c.state
	var reasons []string
	if len(steps) > 0 || c.snap.Load() == nil {
		var err error
		if next, err = c.apply(c.state, steps, now); err != nil {
			return RotationReport{}, err
		}
		if len(steps) > 0 {
			doc, err := next.encode()
			if err != nil {
				return RotationReport{}, err
			}
			if err := c.cfg.Store.Save(ctx, doc); err != nil {
				return RotationReport{}, fmt.Errorf("ca: save rotated state (the CA keeps its old state): %w", err)
			}
		}
		snap, err := c.buildSnapshot(next)
		if err != nil {
			return RotationReport{}, err
		}
		c.state = next
		c.snap.Store(snap)
		for _, s := range steps {
			reasons = append(reasons, s.reason)
		}
	}
	return RotationReport{Steps: reasons, Sequence: next.Sequence, Next: nextEvent(next, &c.cfg, now)}, nil
}

// Next returns when Rotate should run again: always after now, and never
// more than ten minutes away.
func (c *CA) Next() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return nextEvent(c.state, &c.cfg, c.cfg.Now())
}

// checkClock refuses to rotate when the clock reads earlier than the state
// says records were made (beyond Backdate of skew): the clock stepped back,
// or another replica's clock runs ahead. Rotating then would make records
// whose times are out of order and certificates not yet valid.
func (c *CA) checkClock(now time.Time) error {
	for _, rs := range [][]*record{c.state.Roots, c.state.Issuers, c.state.JWTKeys} {
		for _, r := range rs {
			if now.Before(r.Created.Add(-c.cfg.Backdate)) {
				return fmt.Errorf("ca: the clock reads %s but %s was made at %s: the clock is behind the CA's state; fix the clock (NTP) and the CA resumes by itself",
					now.UTC().Format(time.RFC3339), r.ID, r.Created.UTC().Format(time.RFC3339))
			}
		}
	}
	return nil
}

// apply returns a copy of s with steps carried out: new keys made and
// certificates signed. s itself is not changed.
func (c *CA) apply(s *state, steps []step, now time.Time) (*state, error) {
	n := &state{
		Version: s.Version, TrustDomain: s.TrustDomain, Sequence: s.Sequence,
		Roots:   append([]*record(nil), s.Roots...),
		Issuers: append([]*record(nil), s.Issuers...),
		JWTKeys: append([]*record(nil), s.JWTKeys...),
	}
	published := false
	var madeRoot *record
	for _, st := range steps {
		switch st.kind {
		case stepDrop:
			n.Roots = without(n.Roots, st.id)
			n.Issuers = without(n.Issuers, st.id)
			n.JWTKeys = without(n.JWTKeys, st.id)
			// A root's cross certificate dies with the root that signed it.
			for i, r := range n.Roots {
				if r.crossCert != nil && !now.Before(r.crossCert.NotAfter) {
					cp := *r
					cp.CrossCert, cp.crossCert = nil, nil
					n.Roots[i] = &cp
				}
			}
			published = true
		case stepActivateNow:
			for _, rs := range [][]*record{n.Issuers, n.JWTKeys} {
				for i, r := range rs {
					if r.ID == st.id {
						cp := *r
						cp.ActivateAt = now
						if cp.ActivateAt.Before(cp.Created) {
							cp.ActivateAt = cp.Created
						}
						rs[i] = &cp
					}
				}
			}
		case stepNewRoot:
			r, err := c.newRoot(n.Roots, st, now)
			if err != nil {
				return nil, err
			}
			n.Roots = append(n.Roots, r)
			madeRoot = r
			published = true
		case stepNewIssuer:
			parent := madeRoot
			if st.parent != "" {
				parent = find(n.Roots, st.parent)
			}
			if parent == nil {
				return nil, fmt.Errorf("ca: rotation: parent root %q of a new issuing CA is missing", st.parent)
			}
			r, err := c.newIssuer(parent, st, now)
			if err != nil {
				return nil, err
			}
			n.Issuers = append(n.Issuers, r)
			published = true
		case stepNewJWTKey:
			r, err := c.newJWTKey(st, now)
			if err != nil {
				return nil, err
			}
			n.JWTKeys = append(n.JWTKeys, r)
			published = true
		}
	}
	if published {
		n.Sequence++
	}
	return n, nil
}

func (c *CA) newRoot(roots []*record, st step, now time.Time) (*record, error) {
	r, tmpl, err := c.newCARecord("root", st, now)
	if err != nil {
		return nil, err
	}
	// Two CAs may stand below a root: an issuing CA and, while roots
	// rotate, the next root's cross certificate.
	tmpl.MaxPathLen = 2
	r.Cert, err = x509.CreateCertificate(c.cfg.Rand, tmpl, tmpl, r.signer.Public(), r.signer)
	if err != nil {
		return nil, fmt.Errorf("ca: sign root CA: %w", err)
	}
	if r.cert, err = x509.ParseCertificate(r.Cert); err != nil {
		return nil, fmt.Errorf("ca: parse new root CA: %w", err)
	}
	// Cross-sign with the newest root that is still valid, so that peers
	// holding only the old root verify everything under the new one.
	var prev *record
	for _, p := range roots {
		if now.Before(p.NotAfter) {
			prev = p
		}
	}
	if prev != nil {
		cross := *tmpl
		cross.SerialNumber, err = serialNumber(c.cfg.Rand)
		if err != nil {
			return nil, err
		}
		if cross.NotAfter.After(prev.NotAfter) {
			cross.NotAfter = prev.NotAfter
		}
		cross.AuthorityKeyId = nil
		cross.MaxPathLen = 1 // only issuing CAs stand below it
		r.CrossCert, err = x509.CreateCertificate(c.cfg.Rand, &cross, prev.cert, r.signer.Public(), prev.signer)
		if err != nil {
			return nil, fmt.Errorf("ca: cross-sign root CA: %w", err)
		}
		if r.crossCert, err = x509.ParseCertificate(r.CrossCert); err != nil {
			return nil, fmt.Errorf("ca: parse cross-signed root CA: %w", err)
		}
	}
	return r, nil
}

func (c *CA) newIssuer(parent *record, st step, now time.Time) (*record, error) {
	r, tmpl, err := c.newCARecord("issuing", st, now)
	if err != nil {
		return nil, err
	}
	r.Parent = parent.ID
	tmpl.MaxPathLen = 0
	tmpl.MaxPathLenZero = true
	if tmpl.NotBefore.Before(parent.cert.NotBefore) {
		tmpl.NotBefore = parent.cert.NotBefore
	}
	r.Cert, err = x509.CreateCertificate(c.cfg.Rand, tmpl, parent.cert, r.signer.Public(), parent.signer)
	if err != nil {
		return nil, fmt.Errorf("ca: sign issuing CA: %w", err)
	}
	if r.cert, err = x509.ParseCertificate(r.Cert); err != nil {
		return nil, fmt.Errorf("ca: parse new issuing CA: %w", err)
	}
	return r, nil
}

// newCARecord makes the key and the certificate template of a CA.
func (c *CA) newCARecord(kind string, st step, now time.Time) (*record, *x509.Certificate, error) {
	signer, der, err := newKey(c.cfg.KeyAlgorithm)
	if err != nil {
		return nil, nil, err
	}
	serial, err := serialNumber(c.cfg.Rand)
	if err != nil {
		return nil, nil, err
	}
	notAfter := st.notAfter.Truncate(time.Second)
	short := fmt.Sprintf("%032x", serial)[:12]
	id := kind + "-" + short
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			Organization: []string{"kzero"},
			CommonName:   fmt.Sprintf("kzero %s CA %s %s", c.cfg.TrustDomain.Name(), kind, short),
		},
		// A signing certificate SHOULD be an SVID whose ID has no path.
		URIs:                  []*url.URL{c.cfg.TrustDomain.ID().URL()},
		NotBefore:             now.Add(-c.cfg.Backdate).Truncate(time.Second),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	r := &record{ID: id, Key: der, Created: now, ActivateAt: st.activateAt, NotAfter: notAfter, signer: signer}
	return r, tmpl, nil
}

func (c *CA) newJWTKey(st step, now time.Time) (*record, error) {
	signer, der, err := newKey(c.cfg.KeyAlgorithm)
	if err != nil {
		return nil, err
	}
	kid, err := randomID(c.cfg.Rand)
	if err != nil {
		return nil, err
	}
	return &record{ID: kid, Key: der, Created: now, ActivateAt: st.activateAt,
		NotAfter: st.notAfter.Truncate(time.Second), signer: signer}, nil
}

// buildSnapshot makes the immutable view issuing reads.
func (c *CA) buildSnapshot(s *state) (*snapshot, error) {
	snap := &snapshot{jwtKeys: s.JWTKeys}
	b := spiffebundle.New(c.cfg.TrustDomain)
	b.SetRefreshHint(c.cfg.RefreshHint)
	b.SetSequenceNumber(s.Sequence)
	for _, r := range s.Roots {
		b.AddX509Authority(r.cert)
	}
	for _, r := range s.Issuers {
		b.AddX509Authority(r.cert)
		is := &issuer{rec: r, chain: [][]byte{r.Cert}, chainCerts: []*x509.Certificate{r.cert}}
		if p := find(s.Roots, r.Parent); p != nil && p.crossCert != nil {
			is.chain = append(is.chain, p.CrossCert)
			is.chainCerts = append(is.chainCerts, p.crossCert)
		}
		snap.issuers = append(snap.issuers, is)
	}
	for _, r := range s.JWTKeys {
		if err := b.AddJWTAuthority(r.ID, r.signer.Public()); err != nil {
			return nil, fmt.Errorf("ca: publish JWT key %s: %w", r.ID, err)
		}
	}
	snap.bundle = b
	return snap, nil
}

// Bundle returns a copy of the trust domain's SPIFFE bundle: every root and
// issuing CA and every JWT key that verifies a live SVID or is about to
// sign.
func (c *CA) Bundle() *spiffebundle.Bundle { return c.snap.Load().bundle.Clone() }

// Backdate is how far before its issuance a certificate's NotBefore is
// set (Config.Backdate): a leaf asked for TTL lives TTL+Backdate.
func (c *CA) Backdate() time.Duration { return c.cfg.Backdate }

// activeIssuer returns the newest issuing CA whose time to sign has come.
func (s *snapshot) activeIssuer(now time.Time) *issuer {
	for i := len(s.issuers) - 1; i >= 0; i-- {
		is := s.issuers[i]
		if !now.Before(is.rec.ActivateAt) && now.Before(is.rec.NotAfter) {
			return is
		}
	}
	return nil
}

// activeJWTKey returns the newest JWT key whose time to sign has come.
func (s *snapshot) activeJWTKey(now time.Time) *record {
	for i := len(s.jwtKeys) - 1; i >= 0; i-- {
		k := s.jwtKeys[i]
		if !now.Before(k.ActivateAt) && now.Before(k.NotAfter) {
			return k
		}
	}
	return nil
}

func without(rs []*record, id string) []*record {
	out := rs[:0:0]
	for _, r := range rs {
		if r.ID != id {
			out = append(out, r)
		}
	}
	return out
}

func find(rs []*record, id string) *record {
	for _, r := range rs {
		if r.ID == id {
			return r
		}
	}
	return nil
}
