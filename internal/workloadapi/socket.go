package workloadapi

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"
)

// listen makes the Workload API's socket at path, connectable by every
// user from the moment it appears: it is made under a temporary name,
// opened up, then renamed over path, replacing a socket file a previous
// agent left there; anything else at path is refused. Closing the
// listener removes the socket, unless another agent has replaced it since.
func listen(ctx context.Context, path string) (net.Listener, error) {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("workloadapi: socket path: %w", err)
	case fi.Mode().Type() != fs.ModeSocket:
		return nil, fmt.Errorf("workloadapi: %s is %s, not a socket: remove it, or choose another socket path", path, kindOf(fi.Mode()))
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".new")
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("workloadapi: remove a socket left half made: %w", err)
	}
	lis, err := (&net.ListenConfig{}).Listen(ctx, "unix", tmp)
	if err != nil {
		return nil, fmt.Errorf("workloadapi: listen: %w", err)
	}
	ul, ok := lis.(*net.UnixListener)
	if !ok {
		_ = lis.Close()
		return nil, fmt.Errorf("workloadapi: listen: a %T is not a unix socket listener", lis)
	}
	ul.SetUnlinkOnClose(false)
	fail := func(what string, err error) (net.Listener, error) {
		_ = ul.Close()
		_ = os.Remove(tmp)
		return nil, fmt.Errorf("workloadapi: %s: %w", what, err)
	}
	// Every workload's user must be able to connect; attestation decides
	// what each gets.
	if err := os.Chmod(tmp, 0o777); err != nil { //nolint:gosec // see above: the mode is not the access control
		return fail("make the socket connectable by workloads", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail("put the socket in place", err)
	}
	if fi, err = os.Lstat(path); err != nil {
		return fail("socket path", err)
	}
	return &socketListener{UnixListener: ul, path: path, made: fi}, nil
}

// socketListener removes its socket file when it closes, if the file is
// still the one it made.
type socketListener struct {
	*net.UnixListener
	path string
	made fs.FileInfo
	once sync.Once
}

func (l *socketListener) Close() error {
	err := l.UnixListener.Close()
	l.once.Do(func() {
		if fi, serr := os.Lstat(l.path); serr == nil && os.SameFile(fi, l.made) {
			_ = os.Remove(l.path)
		}
	})
	return err
}

// kindOf names the kind of file of mode, for a person.
func kindOf(mode fs.FileMode) string {
	switch {
	case mode.IsRegular():
		return "a regular file"
	case mode.IsDir():
		return "a directory"
	case mode&fs.ModeSymlink != 0:
		return "a symbolic link"
	default:
		return "a file of mode " + mode.Type().String()
	}
}
