package workloadapi

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	spiffewl "github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"kzero.dev/kzero/internal/ca"
	"kzero.dev/kzero/internal/ca/catest"
)

var (
	td    = spiffeid.RequireTrustDomainFromString("cluster.local")
	webID = spiffeid.RequireFromString("spiffe://cluster.local/ns/app/sa/web")
)

// caSigner is the Signer of the tests: the real CA, in process, with a
// count of signatures, optional gates every X.509 (JWT) signature waits
// for, and an optional failure.
type caSigner struct {
	ca      *ca.CA
	x509    atomic.Int64
	jwt     atomic.Int64
	gate    chan struct{}
	jwtGate chan struct{}
	fail    atomic.Pointer[error]
}

func (s *caSigner) SignX509SVID(ctx context.Context, id spiffeid.ID, csr []byte) ([][]byte, error) {
	if s.gate != nil {
		select {
		case <-s.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if err := s.fail.Load(); err != nil {
		return nil, *err
	}
	s.x509.Add(1)
	svid, err := s.ca.IssueX509SVID(ca.X509Request{ID: id, CSR: csr})
	if err != nil {
		return nil, err
	}
	return svid.Chain, nil
}

func (s *caSigner) SignJWTSVID(ctx context.Context, id spiffeid.ID, audience []string) (string, error) {
	if s.jwtGate != nil {
		select {
		case <-s.jwtGate:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	if err := s.fail.Load(); err != nil {
		return "", *err
	}
	s.jwt.Add(1)
	svid, err := s.ca.IssueJWTSVID(ca.JWTRequest{ID: id, Audience: audience})
	if err != nil {
		return "", err
	}
	return svid.Token, nil
}

// failWith makes every signature fail with err from now on; nil heals.
func (s *caSigner) failWith(err error) {
	if err == nil {
		s.fail.Store(nil)
		return
	}
	s.fail.Store(&err)
}

func newCA(t testing.TB, d spiffeid.TrustDomain, now func() time.Time) *ca.CA {
	t.Helper()
	c, err := ca.New(t.Context(), ca.Config{TrustDomain: d, Store: catest.NewMemStore(nil), Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// selfAttestor gives webID to this test process and refuses every other.
func selfAttestor(_ context.Context, c Caller) (spiffeid.ID, error) {
	if int(c.PID) != os.Getpid() {
		return spiffeid.ID{}, &DeniedError{Reason: "not the test process"}
	}
	return webID, nil
}

// env is a Server running on a unix socket in a temporary directory, with
// what it runs on.
type env struct {
	clock   *catest.Clock
	ca      *ca.CA
	signer  *caSigner
	bundles *Bundles
	socket  string
	stop    func() error // stops the server, once; returns what Run did
}

// start runs a Server until the test ends. edit may change the Config
// before New.
func start(t testing.TB, edit func(*Config)) *env {
	t.Helper()
	clk := catest.NewClock(time.Now())
	e := &env{clock: clk, ca: newCA(t, td, clk.Now), bundles: &Bundles{}}
	e.signer = &caSigner{ca: e.ca}
	if err := e.bundles.Set(e.ca.Bundle()); err != nil {
		t.Fatal(err)
	}
	// Socket paths are limited to about 100 bytes: t.TempDir's can be
	// longer.
	dir, err := os.MkdirTemp("", "wlapi")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	e.socket = filepath.Join(dir, "agent.sock")
	cfg := Config{
		SocketPath:    e.socket,
		TrustDomain:   td,
		Attestor:      AttestorFunc(selfAttestor),
		Signer:        e.signer,
		Bundles:       e.bundles,
		Log:           slog.New(slog.DiscardHandler),
		CheckInterval: 5 * time.Millisecond,
		Now:           clk.Now,
	}
	if edit != nil {
		edit(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	e.stop = sync.OnceValue(func() error {
		cancel()
		return <-done
	})
	t.Cleanup(func() {
		if err := e.stop(); !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
	})
	waitForSocket(t, e.socket, nil)
	return e
}

// waitForSocket waits until Run has made the socket, other than stale if
// that is not nil, and returns its FileInfo.
func waitForSocket(t testing.TB, path string, stale os.FileInfo) os.FileInfo {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if fi, err := os.Lstat(path); err == nil && fi.Mode().Type() == os.ModeSocket && (stale == nil || !os.SameFile(fi, stale)) {
			return fi
		}
		if time.Now().After(deadline) {
			t.Fatalf("no socket at %s after 5 s", path)
		}
		select {
		case <-time.After(time.Millisecond):
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		}
	}
}

func (e *env) addr() string { return "unix://" + e.socket }

// client is go-spiffe's Workload API client, the reference, on e's socket.
func (e *env) client(t testing.TB) *spiffewl.Client {
	t.Helper()
	c, err := spiffewl.New(t.Context(), spiffewl.WithAddr(e.addr()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// raw is a bare gRPC client of e's socket, which sends only the metadata
// a test gives it.
func (e *env) raw(t testing.TB) workload.SpiffeWorkloadAPIClient {
	t.Helper()
	_, c := e.rawConn(t)
	return c
}

// rawConn is raw with its connection, closed when the test ends if not
// before.
func (e *env) rawConn(t testing.TB) (*grpc.ClientConn, workload.SpiffeWorkloadAPIClient) {
	t.Helper()
	conn, err := grpc.NewClient(e.addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, workload.NewSpiffeWorkloadAPIClient(conn)
}

// withHeader adds the security header, as every client must.
func withHeader(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, securityHeader, "true")
}

// wantStatus fails t unless err is a gRPC status with code and message.
func wantStatus(t testing.TB, err error, code codes.Code, msg string) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || err == nil {
		t.Fatalf("got error %v, want status %s %q", err, code, msg)
	}
	if st.Code() != code || st.Message() != msg {
		t.Fatalf("got status %s %q,\nwant %s %q", st.Code(), st.Message(), code, msg)
	}
}

// within waits for ch up to 10 s.
func within[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s after 10 s", what)
		panic("unreachable")
	}
}
