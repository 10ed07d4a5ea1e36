package unixsocket

import (
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"testing"
)

// A socket is made with its mode, replaces a socket left there, refuses
// any other file, and is removed on close only while it is still the one
// made.
func TestListen(t *testing.T) {
	dir, err := os.MkdirTemp("", "sock") // not t.TempDir: a socket's path is short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	path := filepath.Join(dir, "a.sock")

	old, err := Listen(t.Context(), path, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(path); err != nil || fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the socket: %v, %v; want a socket of mode 0600", fi, err)
	}
	// A newer process replaces it before the old one closes: the old one's
	// close leaves the new socket.
	lis, err := Listen(t.Context(), path, 0o777)
	if err != nil {
		t.Fatalf("replacing a socket: %v", err)
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("the newer socket is gone after the older one closed: %v", err)
	}
	_ = c.Close()
	if fi, _ := os.Lstat(path); fi.Mode().Perm() != 0o777 {
		t.Errorf("mode %v, want 0777", fi.Mode().Perm())
	}
	if err := lis.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("the socket is left after close: %v", err)
	}

	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(t.Context(), file, 0o600); err == nil || err.Error() != file+" is a regular file, not a socket: remove it, or choose another socket path" {
		t.Errorf("over a regular file: %v", err)
	}
}
