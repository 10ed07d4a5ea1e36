package filestore_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"kzero.dev/kzero/internal/filestore"
)

func TestRoundTripAndModes(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state", "ca.json")
	s, err := filestore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Load(ctx); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of a new store: %v, want fs.ErrNotExist", err)
	}
	for _, doc := range []string{"first", "second, longer than the first"} {
		if err := s.Save(ctx, []byte(doc)); err != nil {
			t.Fatal(err)
		}
		got, err := s.Load(ctx)
		if err != nil || string(got) != doc {
			t.Fatalf("Load = %q, %v; want %q", got, err, doc)
		}
	}
	for p, want := range map[string]os.FileMode{path: 0o600, filepath.Dir(path): 0o700} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s mode = %04o, want %04o", p, fi.Mode().Perm(), want)
		}
	}
	// Nothing but the document and its lock is left in the directory.
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "ca.json ca.json.lock" {
		t.Errorf("directory holds %v, want the document and its lock only", names)
	}
}

func TestRefusals(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "open")
	if err := os.Mkdir(open, 0o755); err != nil {
		t.Fatal(err)
	}
	readable := filepath.Join(dir, "readable", "ca.json")
	if err := os.MkdirAll(filepath.Dir(readable), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(readable, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, path, wantErr string }{
		{"directory open to others", filepath.Join(open, "ca.json"),
			"filestore: " + open + " has mode 0755 and other users may read it: it holds private keys, run `chmod 700 " + open + "`"},
		{"file open to others", readable,
			"filestore: " + readable + " has mode 0644 and other users may read it: it holds private keys, run `chmod 600 " + readable + "`"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := filestore.Open(tc.path)
			if err == nil {
				s.Close()
				t.Fatal("Open accepted it")
			}
			if err.Error() != tc.wantErr {
				t.Errorf("error =\n  %v\nwant\n  %s", err, tc.wantErr)
			}
		})
	}
}

func TestEmptyFileIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "ca.json")
	if err := os.Mkdir(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := filestore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = s.Load(context.Background())
	want := "filestore: " + path + " is empty: restore it from a backup, or remove it to start a new trust domain"
	if err == nil || err.Error() != want {
		t.Errorf("error = %v, want %s", err, want)
	}
}

func TestSecondOpenIsRefusedWhileLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "ca.json")
	s, err := filestore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := filestore.Open(path); err == nil || !strings.Contains(err.Error(), "is in use by another process") {
		t.Fatalf("second Open: %v, want in use", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	s2, err := filestore.Open(path)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	s2.Close()
}
