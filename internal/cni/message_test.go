package cni_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"kzero.dev/kzero/internal/cni"
)

// socketDir is a temporary directory short enough for a unix socket's
// path (108 bytes), which t.TempDir's, named after the test, may not be.
func socketDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "kzcni")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// connPair is both ends of one connection on a real unix socket, through a
// listener on the file system as between the plugin and the agent.
func connPair(t testing.TB) (client, server *net.UnixConn) {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(socketDir(t), "agent.sock"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close() //nolint:errcheck // one connection is enough
	client, err = net.DialUnix("unix", nil, ln.Addr().(*net.UnixAddr))
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close(); _ = server.Close() })
	deadline := time.Now().Add(10 * time.Second)
	_ = client.SetDeadline(deadline)
	_ = server.SetDeadline(deadline)
	return client, server
}

// tempFile creates a file in dir with content and opens it.
func tempFile(t testing.TB, dir, name, content string) *os.File {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path) //nolint:gosec // the test's own file
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return f
}

// sameFile reports whether the descriptors a and b refer to one inode.
func sameFile(t testing.TB, a, b *os.File) bool {
	t.Helper()
	var sa, sb unix.Stat_t
	if err := unix.Fstat(int(a.Fd()), &sa); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fstat(int(b.Fd()), &sb); err != nil {
		t.Fatal(err)
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

// openCount is how many of this process's descriptors refer to path.
func openCount(t testing.TB, path string) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	n := 0
	for _, e := range ents {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && target == path {
			n++
		}
	}
	return n
}

func TestMessageRoundTrip(t *testing.T) {
	body := cni.Encode(cni.Request{ContainerID: "3f2a", Namespace: "shop", Name: "web-0", UID: "u"})
	t.Run("without a descriptor", func(t *testing.T) {
		client, server := connPair(t)
		if err := cni.WriteMessage(client, body, nil); err != nil {
			t.Fatal(err)
		}
		got, fd, err := cni.ReadMessage(server)
		if err != nil {
			t.Fatal(err)
		}
		if fd != nil {
			t.Errorf("ReadMessage gave descriptor %d, none was sent", fd.Fd())
			_ = fd.Close()
		}
		if !bytes.Equal(got, body) {
			t.Errorf("ReadMessage = %q, want %q", got, body)
		}
	})
	t.Run("with a descriptor", func(t *testing.T) {
		client, server := connPair(t)
		netns := tempFile(t, t.TempDir(), "netns", "not really a namespace")
		if err := cni.WriteMessage(client, body, []int{int(netns.Fd())}); err != nil {
			t.Fatal(err)
		}
		got, fd, err := cni.ReadMessage(server)
		if err != nil {
			t.Fatal(err)
		}
		if fd == nil {
			t.Fatal("ReadMessage gave no descriptor, one was sent")
		}
		defer fd.Close() //nolint:errcheck // read only
		if fd.Fd() == netns.Fd() {
			t.Errorf("received descriptor %d is the sender's own", fd.Fd())
		}
		if !sameFile(t, fd, netns) {
			t.Error("the received descriptor is not the sent file's inode")
		}
		if !bytes.Equal(got, body) {
			t.Errorf("ReadMessage = %q, want %q", got, body)
		}
	})
	t.Run("the answer back", func(t *testing.T) {
		// The plugin writes, then reads the agent's answer on the same
		// connection: WriteMessage closes only the writing side.
		client, server := connPair(t)
		if err := cni.WriteMessage(client, body, nil); err != nil {
			t.Fatal(err)
		}
		if _, _, err := cni.ReadMessage(server); err != nil {
			t.Fatal(err)
		}
		reply := cni.Encode(cni.Reply{Enrolled: true})
		if err := cni.WriteMessage(server, reply, nil); err != nil {
			t.Fatal(err)
		}
		got, _, err := cni.ReadMessage(client)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != `{"enrolled":true}` {
			t.Errorf("answer = %s, want {\"enrolled\":true}", got)
		}
	})
	t.Run("written in parts", func(t *testing.T) {
		// A message is everything up to the writer's end, however the
		// stream splits it.
		client, server := connPair(t)
		netns := tempFile(t, t.TempDir(), "netns", "")
		if _, _, err := client.WriteMsgUnix(body[:5], unix.UnixRights(int(netns.Fd())), nil); err != nil {
			t.Fatal(err)
		}
		if _, err := client.Write(body[5:]); err != nil {
			t.Fatal(err)
		}
		if err := client.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		got, fd, err := cni.ReadMessage(server)
		if err != nil {
			t.Fatal(err)
		}
		if fd == nil || !sameFile(t, fd, netns) {
			t.Error("the descriptor sent with the first part was lost")
		}
		if fd != nil {
			_ = fd.Close()
		}
		if !bytes.Equal(got, body) {
			t.Errorf("ReadMessage = %q, want %q", got, body)
		}
	})
}

func TestReadMessageSize(t *testing.T) {
	for _, tc := range []struct {
		name    string
		size    int
		wantErr string
	}{
		{name: "one byte", size: 1},
		{name: "MaxMessage", size: cni.MaxMessage},
		{name: "MaxMessage+1", size: cni.MaxMessage + 1, wantErr: "a message of more than 16384 bytes"},
		{name: "a megabyte", size: 1 << 20, wantErr: "a message of more than 16384 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, server := connPair(t)
			dir := t.TempDir()
			netns := tempFile(t, dir, "netns", "")
			body := bytes.Repeat([]byte("x"), tc.size)
			written := make(chan error, 1)
			go func() { written <- cni.WriteMessage(client, body, []int{int(netns.Fd())}) }()
			got, fd, err := cni.ReadMessage(server)
			_ = server.Close() // unblocks a writer of more than was read
			if werr := <-written; tc.wantErr == "" && werr != nil {
				t.Errorf("WriteMessage: %v", werr)
			}
			_ = netns.Close()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("ReadMessage of %d bytes: %v", tc.size, err)
				}
				if !bytes.Equal(got, body) {
					t.Errorf("ReadMessage gave %d bytes, want %d", len(got), tc.size)
				}
				if fd == nil {
					t.Fatal("no descriptor")
				}
				_ = fd.Close()
				return
			}
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("ReadMessage of %d bytes: error %v, want %q", tc.size, err, tc.wantErr)
			}
			if got != nil || fd != nil {
				t.Errorf("ReadMessage refused the message but returned body of %d bytes, descriptor %v", len(got), fd)
			}
			if n := openCount(t, netns.Name()); n != 0 {
				t.Errorf("the refused message's descriptor is still open (%d descriptors)", n)
			}
		})
	}
}

func TestReadMessageKeepsOneDescriptor(t *testing.T) {
	// More than fit in ReadMessage's control buffer (4), too: the kernel
	// drops those, and must not leave them open either.
	for _, n := range []int{2, 4, 6} {
		t.Run(fmt.Sprintf("%d descriptors", n), func(t *testing.T) {
			client, server := connPair(t)
			dir := t.TempDir()
			var files []*os.File
			var fds []int
			for i := range n {
				f := tempFile(t, dir, "file"+string(rune('a'+i)), "")
				files = append(files, f)
				fds = append(fds, int(f.Fd()))
			}
			if err := cni.WriteMessage(client, []byte(`{}`), fds); err != nil {
				t.Fatal(err)
			}
			// Only what is in flight remains: the sender's are closed.
			for _, f := range files {
				_ = f.Close()
			}
			body, fd, err := cni.ReadMessage(server)
			if err != nil {
				t.Fatal(err)
			}
			if string(body) != "{}" {
				t.Errorf("body = %q", body)
			}
			if fd == nil {
				t.Fatal("no descriptor kept")
			}
			defer fd.Close() //nolint:errcheck // read only
			if err := unix.Fstat(int(fd.Fd()), &unix.Stat_t{}); err != nil {
				t.Fatal(err)
			}
			if got := openCount(t, files[0].Name()); got != 1 {
				t.Errorf("the first file is open %d times, want 1 (the kept descriptor)", got)
			}
			for _, f := range files[1:] {
				if got := openCount(t, f.Name()); got != 0 {
					t.Errorf("%s is still open %d times: ReadMessage must close the descriptors it does not keep", filepath.Base(f.Name()), got)
				}
			}
			// Close-on-exec, so that nothing the agent runs inherits a pod's
			// namespace.
			flags, err := unix.FcntlInt(fd.Fd(), unix.F_GETFD, 0)
			if err != nil {
				t.Fatal(err)
			}
			if flags&unix.FD_CLOEXEC == 0 {
				t.Error("the kept descriptor is not close-on-exec")
			}
		})
	}
}

func TestReadMessagePeerClosesEarly(t *testing.T) {
	t.Run("nothing written", func(t *testing.T) {
		client, server := connPair(t)
		_ = client.Close()
		body, fd, err := cni.ReadMessage(server)
		if !errors.Is(err, io.EOF) {
			t.Errorf("ReadMessage from a peer gone before writing: error %v, want io.EOF", err)
		}
		if body != nil || fd != nil {
			t.Errorf("ReadMessage = %q, %v, want nothing", body, fd)
		}
	})
	t.Run("never ends its message", func(t *testing.T) {
		// A writer that sends part of its message and its descriptor, then
		// hangs: the reader's deadline ends it, and the descriptor is closed.
		client, server := connPair(t)
		netns := tempFile(t, t.TempDir(), "netns", "")
		if _, _, err := client.WriteMsgUnix([]byte(`{"containerID":`), unix.UnixRights(int(netns.Fd())), nil); err != nil {
			t.Fatal(err)
		}
		_ = netns.Close()
		_ = server.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		body, fd, err := cni.ReadMessage(server)
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("ReadMessage of an unfinished message: error %v, want a timeout", err)
		}
		if body != nil || fd != nil {
			t.Errorf("ReadMessage = %q, %v, want nothing", body, fd)
		}
		if n := openCount(t, netns.Name()); n != 0 {
			t.Errorf("the unfinished message's descriptor is still open (%d descriptors)", n)
		}
	})
	t.Run("reader gone", func(t *testing.T) {
		client, server := connPair(t)
		_ = server.Close()
		err := cni.WriteMessage(client, []byte(`{}`), nil)
		if !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("WriteMessage to a closed peer: error %v, want EPIPE or ECONNRESET", err)
		}
	})
}
