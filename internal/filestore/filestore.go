// Package filestore keeps one secret document in a file: the CA's state and
// keys for `kzero up`, where there is no Kubernetes API to hold them.
//
// The file is written atomically (a temporary file in the same directory,
// synced, renamed over the old one, the directory synced), created with mode
// 0600 in a directory of mode 0700, and guarded by an exclusive lock so that
// two processes never share it. A store whose directory or file is open to
// other users, or that cannot be read, is refused rather than repaired.
package filestore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Store is a document in a file. Its methods are safe for use by one
// goroutine at a time; the CA serialises its calls.
type Store struct {
	path string
	lock *os.File
}

// Open opens the store at path, creating its directory (mode 0700) when
// missing, and takes an exclusive lock on it for the life of the Store. It
// refuses a directory or an existing file that other users can read.
func Open(path string) (*Store, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("filestore: create directory %s: %w", dir, err)
	}
	if err := checkMode(dir, 0o077, "chmod 700"); err != nil {
		return nil, err
	}
	if _, err := os.Stat(path); err == nil {
		if err := checkMode(path, 0o077, "chmod 600"); err != nil {
			return nil, err
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("filestore: cannot stat %s, refusing to start: %w", path, err)
	}
	lock, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o600) //nolint:gosec // the path is the operator's configuration
	if err != nil {
		return nil, fmt.Errorf("filestore: open lock file: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = lock.Close()
		return nil, fmt.Errorf("filestore: %s is in use by another process (lock %s.lock): stop it first: %w", path, path, err)
	}
	return &Store{path: path, lock: lock}, nil
}

func checkMode(path string, forbidden fs.FileMode, fix string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("filestore: cannot stat %s, refusing to start: %w", path, err)
	}
	if fi.Mode().Perm()&forbidden != 0 {
		return fmt.Errorf("filestore: %s has mode %04o and other users may read it: it holds private keys, run `%s %s`", path, fi.Mode().Perm(), fix, path)
	}
	return nil
}

// Path returns the file's path.
func (s *Store) Path() string { return s.path }

// Load returns the document, or an error wrapping fs.ErrNotExist when the
// file does not exist yet.
func (s *Store) Load(context.Context) ([]byte, error) {
	doc, err := os.ReadFile(s.path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("filestore: %s: %w", s.path, fs.ErrNotExist)
		}
		return nil, fmt.Errorf("filestore: read %s: %w", s.path, err)
	}
	if len(doc) == 0 {
		return nil, fmt.Errorf("filestore: %s is empty: restore it from a backup, or remove it to start a new trust domain", s.path)
	}
	return doc, nil
}

// Save replaces the document atomically: after a crash the file holds
// either the old document or the new one, never a mix.
func (s *Store) Save(_ context.Context, doc []byte) (err error) {
	dir := filepath.Dir(s.path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(s.path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("filestore: create temporary file: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("filestore: chmod temporary file: %w", err)
	}
	if _, err := tmp.Write(doc); err != nil {
		return fmt.Errorf("filestore: write temporary file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("filestore: sync temporary file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("filestore: close temporary file: %w", err)
	}
	if err := os.Rename(tmp.Name(), s.path); err != nil {
		return fmt.Errorf("filestore: replace %s: %w", s.path, err)
	}
	d, err := os.Open(dir) //nolint:gosec // the store's own directory
	if err != nil {
		return fmt.Errorf("filestore: open directory to sync: %w", err)
	}
	defer func() { _ = d.Close() }()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("filestore: sync directory: %w", err)
	}
	return nil
}

// Close releases the lock. It is safe to call more than once.
func (s *Store) Close() error {
	if s.lock == nil {
		return nil
	}
	err := s.lock.Close() // closing the descriptor releases the flock
	s.lock = nil
	if err != nil {
		return fmt.Errorf("filestore: release lock: %w", err)
	}
	return nil
}
