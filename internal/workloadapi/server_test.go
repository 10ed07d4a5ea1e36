package workloadapi

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"google.golang.org/grpc/codes"
)

func TestNewChecksTheConfig(t *testing.T) {
	ok := Config{
		SocketPath: "/run/kzero/agent.sock", TrustDomain: td, Attestor: AttestorFunc(selfAttestor),
		Signer: &caSigner{}, Bundles: &Bundles{}, Log: slog.New(slog.DiscardHandler),
	}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{name: "valid", edit: func(*Config) {}},
		{
			name: "empty", edit: func(c *Config) { *c = Config{} },
			want: "workloadapi: invalid config: socketPath: required, or a listener\ntrustDomain: required\nattestor: required\nsigner: required\nbundles: required\nlog: required",
		},
		{
			name: "relative socket path", edit: func(c *Config) { c.SocketPath = "agent.sock" },
			want: `workloadapi: invalid config: socketPath: "agent.sock" is not an absolute path`,
		},
		{
			name: "socket path and listener", edit: func(c *Config) { c.Listener = &net.UnixListener{} },
			want: "workloadapi: invalid config: socketPath: give a socket path or a listener, not both",
		},
		{
			name: "negative durations", edit: func(c *Config) { c.Idle, c.CheckInterval, c.SignTimeout = -1, -time.Second, -time.Minute },
			want: "workloadapi: invalid config: idle: must not be negative, got -1ns\ncheckInterval: must not be negative, got -1s\nsignTimeout: must not be negative, got -1m0s",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ok
			tc.edit(&cfg)
			s, err := New(cfg)
			switch {
			case tc.want == "" && err != nil:
				t.Fatal(err)
			case tc.want == "":
				if s.cfg.Idle != DefaultIdle || s.cfg.CheckInterval != DefaultCheckInterval || s.cfg.SignTimeout != DefaultSignTimeout || s.cfg.Now == nil {
					t.Fatalf("defaults not applied: %+v", s.cfg)
				}
			case err == nil:
				t.Fatalf("no error, want %q", tc.want)
			case err.Error() != tc.want:
				t.Fatalf("got  %q\nwant %q", err, tc.want)
			}
		})
	}
}

// newServer returns a Server for a socket at path.
func newServer(t *testing.T, path string) *Server {
	t.Helper()
	s, err := New(Config{
		SocketPath: path, TrustDomain: td, Attestor: AttestorFunc(selfAttestor),
		Signer: &caSigner{ca: newCA(t, td, time.Now)}, Bundles: &Bundles{}, Log: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRunRefusesToReplaceWhatIsNotASocket(t *testing.T) {
	dir := t.TempDir()
	file, sub := filepath.Join(dir, "file"), filepath.Join(dir, "dir")
	if err := os.WriteFile(file, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, want string }{
		{file, "workloadapi: " + file + " is a regular file, not a socket: remove it, or choose another socket path"},
		{sub, "workloadapi: " + sub + " is a directory, not a socket: remove it, or choose another socket path"},
	} {
		err := newServer(t, tc.path).Run(t.Context())
		if err == nil || err.Error() != tc.want {
			t.Fatalf("got %v\nwant %s", err, tc.want)
		}
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "keep me" {
		t.Fatalf("the file was touched: %q, %v", b, err)
	}
}

func TestRunReplacesAStaleSocketAndLetsEveryUserConnect(t *testing.T) {
	e := start(t, nil)
	if err := e.stop(); !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if _, err := os.Lstat(e.socket); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the socket is still there after Run: %v", err)
	}
	// A socket file left by an agent that died.
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: e.socket, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	stale, err := os.Lstat(e.socket)
	if err != nil {
		t.Fatal(err)
	}

	s := newServer(t, e.socket)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
	}()
	if fi := waitForSocket(t, e.socket, stale); fi.Mode().Perm() != 0o777 {
		t.Fatalf("socket mode %s, want every user's read and write", fi.Mode())
	}
	// The new server answers there.
	c := (&env{socket: e.socket}).raw(t)
	wantStatus(t, fetchX509Bundles(withHeader(t.Context()), nil, c), codes.Unavailable, "the agent has no X.509 trust bundle yet: retry with backoff")
	if err := s.Run(t.Context()); err == nil || err.Error() != "workloadapi: Run was called twice: make a new Server" {
		t.Fatalf("second Run: %v", err)
	}
}

func TestAnOldAgentLeavesTheNewOnesSocket(t *testing.T) {
	old := start(t, nil)
	stale, err := os.Lstat(old.socket)
	if err != nil {
		t.Fatal(err)
	}
	s := newServer(t, old.socket)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	waitForSocket(t, old.socket, stale)
	if err := old.stop(); !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if _, err := os.Lstat(old.socket); err != nil {
		t.Fatalf("the old agent removed the new one's socket: %v", err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if _, err := os.Lstat(old.socket); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the new agent left its socket: %v", err)
	}
}

func TestStoppingEndsStreamsWithUnavailable(t *testing.T) {
	e := start(t, nil)
	stream, err := e.raw(t).FetchX509SVID(withHeader(t.Context()), &workload.X509SVIDRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	if err := e.stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v, want context.Canceled", err)
	}
	if d := time.Since(stopped); d >= drainTimeout {
		t.Fatalf("stopping took %s: streams held it up until the drain timeout", d)
	}
	_, err = stream.Recv()
	wantStatus(t, err, codes.Unavailable, "the agent is shutting down: connect again")
}

func TestPeerCredentialsNeedAUnixSocket(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	_, _, err := peerCredentials{}.ServerHandshake(a)
	if want := "workloadapi: a *net.pipe is not a unix socket connection: the Workload API identifies callers by their socket's credentials"; err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
	if _, _, err := (peerCredentials{}).ClientHandshake(t.Context(), "", a); !errors.Is(err, errClientSide) {
		t.Fatalf("client handshake: %v", err)
	}
}
