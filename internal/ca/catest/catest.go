// Package catest has what tests of packages that use the CA share: an
// in-memory ca.Store, a stub CSR and a settable clock. It is for tests only, and imports
// nothing of the CA, so the CA's own tests can use it.
package catest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"io/fs"
	"sync"
	"testing"
	"time"
)

// NewCSR makes a P-256 key and an empty PKCS#10 request signed with it,
// as kubelet makes them for a PodCertificateRequest.
func NewCSR(t testing.TB) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	return key, der
}

// MemStore is an in-memory ca.Store, safe for concurrent use. The file
// store is tested on its own; tests of the CA and of its users need fast
// saves.
type MemStore struct {
	mu    sync.Mutex
	doc   []byte
	saves int
	fail  error
}

// NewMemStore returns a store holding doc (nil: an empty store).
func NewMemStore(doc []byte) *MemStore { return &MemStore{doc: doc} }

// Load returns the saved document, or an error wrapping fs.ErrNotExist.
func (m *MemStore) Load(context.Context) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.doc == nil {
		return nil, fmt.Errorf("catest: %w", fs.ErrNotExist)
	}
	return append([]byte(nil), m.doc...), nil
}

// Save keeps a copy of doc, or returns the error set by FailWith.
func (m *MemStore) Save(_ context.Context, doc []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	m.doc = append([]byte(nil), doc...)
	m.saves++
	return nil
}

// FailWith makes Save return err from now on; nil heals it.
func (m *MemStore) FailWith(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fail = err
}

// Doc returns the saved document.
func (m *MemStore) Doc() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]byte(nil), m.doc...)
}

// Saves counts the successful saves.
func (m *MemStore) Saves() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.saves
}

// Clock is a clock a test sets: its Now goes in a Config's Now. It is
// safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a Clock at t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Add moves the clock by d.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
