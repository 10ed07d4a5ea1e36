// Package unixsocket makes the unix sockets kzero's node agent serves on
// (the Workload API's, the CSI driver's): in place atomically with their
// mode already set, replacing a socket a previous process left, and
// removed on close unless a newer process has replaced them since.
package unixsocket

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

// Listen makes the unix socket path with mode (the socket's permission
// bits: who may connect) and listens on it. The socket is made under a
// temporary name in path's directory, which must exist, given its mode,
// then renamed over path, so that it is never there with another mode; a
// socket file a previous process left at path is replaced, anything else
// there is refused. Closing the listener removes the socket, unless
// another process has replaced it since (a new one may start before the
// old one has stopped). Errors have no package prefix: the caller's names
// the socket.
func Listen(ctx context.Context, path string, mode fs.FileMode) (net.Listener, error) {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("socket path: %w", err)
	case fi.Mode().Type() != fs.ModeSocket:
		return nil, fmt.Errorf("%s is %s, not a socket: remove it, or choose another socket path", path, kindOf(fi.Mode()))
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".new")
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("remove a socket left half made: %w", err)
	}
	lis, err := (&net.ListenConfig{}).Listen(ctx, "unix", tmp)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	ul, ok := lis.(*net.UnixListener)
	if !ok {
		_ = lis.Close()
		return nil, fmt.Errorf("listen: a %T is not a unix socket listener", lis)
	}
	ul.SetUnlinkOnClose(false)
	fail := func(what string, err error) (net.Listener, error) {
		_ = ul.Close()
		_ = os.Remove(tmp)
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := os.Chmod(tmp, mode.Perm()); err != nil {
		return fail("set the socket's mode", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail("put the socket in place", err)
	}
	if fi, err = os.Lstat(path); err != nil {
		return fail("socket path", err)
	}
	return &listener{UnixListener: ul, path: path, made: fi}, nil
}

// listener removes its socket file when it closes, if the file is still
// the one it made.
type listener struct {
	*net.UnixListener
	path string
	made fs.FileInfo
	once sync.Once
}

func (l *listener) Close() error {
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
