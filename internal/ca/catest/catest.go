// Package catest has what tests of packages that use the CA share: an
// in-memory ca.Store. It is for tests only.
package catest

import (
	"context"
	"fmt"
	"io/fs"
	"sync"
)

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
