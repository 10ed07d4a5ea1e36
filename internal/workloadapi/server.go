package workloadapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
)

// Defaults.
const (
	// DefaultIdle is how long an X.509-SVID stays cached after its last
	// use when no stream watches it.
	DefaultIdle = 10 * time.Minute
	// DefaultCheckInterval is how often the cache looks for SVIDs to
	// renew and entries to drop.
	DefaultCheckInterval = time.Second
	// DefaultSignTimeout bounds every call to the Signer.
	DefaultSignTimeout = 10 * time.Second
	// drainTimeout is how long Run waits for requests in flight when it
	// stops, before it closes their connections.
	drainTimeout = 5 * time.Second
)

// Config configures a Server. Fields marked required are checked by New;
// zero durations mean their defaults.
type Config struct {
	// SocketPath is the unix socket to listen on when Listener is nil, an
	// absolute path. Run replaces a socket file left there, refuses any
	// other kind of file, and makes the socket connectable by every user
	// (0777): who gets what is attestation's decision, not the file's
	// mode. Run removes it when it stops.
	SocketPath string
	// Listener to serve on instead of SocketPath; it must accept unix
	// socket connections, whose peers' credentials identify callers.
	Listener net.Listener

	// TrustDomain the agent serves. Required.
	TrustDomain spiffeid.TrustDomain
	// Attestor says who a caller is. Required.
	Attestor Attestor
	// Signer gets SVIDs signed by the authority. Required.
	Signer Signer
	// Bundles are the trust bundles served; until it holds TrustDomain's,
	// requests that need it get Unavailable. Required.
	Bundles *Bundles
	// Log receives operational messages; never key material. Required.
	Log *slog.Logger

	// Idle is how long an X.509-SVID nobody watches stays cached after its
	// last use; zero means DefaultIdle.
	Idle time.Duration
	// CheckInterval is how often the cache looks for SVIDs to renew and
	// entries to drop; zero means DefaultCheckInterval.
	CheckInterval time.Duration
	// SignTimeout bounds every call to the Signer; zero means
	// DefaultSignTimeout.
	SignTimeout time.Duration
	// Now returns the current time, for renewal and expiry; nil means
	// time.Now.
	Now func() time.Time
	// CallerGroup, if set, names the group a caller's connections and
	// streams are counted in against the limits below: the agent counts
	// by the pod of the caller's cgroup, so that a pod cannot multiply
	// its share by forking. Nil, or "" for a caller, means by process
	// (PID). It is called once per connection, concurrently.
	CallerGroup func(pid int32) string
	// MaxConnsPerProcess bounds the connections one caller (its group, or
	// its process) holds open to the server; a connection over it is
	// closed at once. Zero means DefaultMaxConnsPerProcess.
	MaxConnsPerProcess int
	// MaxStreamsPerProcess bounds the streams one caller holds open over
	// all its connections; a stream over it ends with ResourceExhausted.
	// Zero means DefaultMaxStreamsPerProcess.
	MaxStreamsPerProcess int
	// MaxConns bounds the connections of all callers together; zero means
	// DefaultMaxConns.
	MaxConns int
}

// Server is the SPIFFE Workload API of one agent. Create it with New and
// call Run once.
type Server struct {
	cfg     Config
	started atomic.Bool
}

// New checks cfg and applies its defaults; it listens only in Run.
func New(cfg Config) (*Server, error) {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	switch {
	case cfg.SocketPath == "" && cfg.Listener == nil:
		bad("socketPath", "required, or a listener")
	case cfg.SocketPath != "" && cfg.Listener != nil:
		bad("socketPath", "give a socket path or a listener, not both")
	case cfg.SocketPath != "" && !filepath.IsAbs(cfg.SocketPath):
		bad("socketPath", "%q is not an absolute path", cfg.SocketPath)
	}
	if cfg.TrustDomain.IsZero() {
		bad("trustDomain", "required")
	}
	if cfg.Attestor == nil {
		bad("attestor", "required")
	}
	if cfg.Signer == nil {
		bad("signer", "required")
	}
	if cfg.Bundles == nil {
		bad("bundles", "required")
	}
	if cfg.Log == nil {
		bad("log", "required")
	}
	for _, d := range []struct {
		field string
		v     time.Duration
	}{{"idle", cfg.Idle}, {"checkInterval", cfg.CheckInterval}, {"signTimeout", cfg.SignTimeout}} {
		if d.v < 0 {
			bad(d.field, "must not be negative, got %s", d.v)
		}
	}
	checkLimits(&cfg, bad)
	if len(errs) > 0 {
		return nil, fmt.Errorf("workloadapi: invalid config: %w", errors.Join(errs...))
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&cfg.Idle, DefaultIdle)
	def(&cfg.CheckInterval, DefaultCheckInterval)
	def(&cfg.SignTimeout, DefaultSignTimeout)
	if cfg.MaxConnsPerProcess == 0 {
		cfg.MaxConnsPerProcess = DefaultMaxConnsPerProcess
	}
	if cfg.MaxStreamsPerProcess == 0 {
		cfg.MaxStreamsPerProcess = DefaultMaxStreamsPerProcess
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Server{cfg: cfg}, nil
}

// Run serves until ctx ends, then ends every stream with Unavailable (so
// that clients reconnect, to the next agent), gives requests in flight
// five seconds, and returns ctx.Err(). It returns early only if it cannot
// listen or serve.
func (s *Server) Run(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("workloadapi: Run was called twice: make a new Server")
	}
	lis := s.cfg.Listener
	if lis == nil {
		var err error
		if lis, err = listen(ctx, s.cfg.SocketPath); err != nil {
			return err
		}
	}
	limits := newProcessLimits(&s.cfg)
	lis = &limitedListener{Listener: lis, limits: limits}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	c, jc := newCache(runCtx, &s.cfg), newJWTCache(runCtx, &s.cfg)
	swept := make(chan struct{})
	go func() {
		defer close(swept)
		c.run(runCtx, s.cfg.CheckInterval, jc.sweep)
	}()
	defer func() { <-swept }()

	gs := grpc.NewServer(
		grpc.Creds(peerCredentials{}),
		// Every pod holds a connection open, mostly idle: grpc-go's
		// default 32 KiB read and write buffers per connection were most
		// of the agent's heap (7.2 MiB for 100 streams, 1.4 MiB with
		// these; BenchmarkServerMemory). Requests are a few hundred
		// bytes; a write borrows a buffer from a pool while it lasts.
		grpc.SharedWriteBuffer(true),
		grpc.ReadBufferSize(1024),
		// Bounds of what one caller may ask (limits.go).
		grpc.MaxRecvMsgSize(maxRequestBytes),
		grpc.MaxConcurrentStreams(maxStreamsPerConn),
		// Fixed flow-control windows (which turns grpc-go's window
		// growth off): what a connection's peer may have in flight to
		// the agent stays within them, whatever it sends.
		grpc.InitialWindowSize(flowWindow),
		grpc.InitialConnWindowSize(flowWindow),
		grpc.ChainUnaryInterceptor(requireHeaderUnary, limits.unary),
		grpc.ChainStreamInterceptor(requireHeaderStream, limits.stream),
	)
	workload.RegisterSpiffeWorkloadAPIServer(gs, &api{cfg: &s.cfg, cache: c, jwt: jc, stop: runCtx.Done()})
	s.cfg.Log.Info("serving the SPIFFE Workload API", "socket", lis.Addr().String(), "trustDomain", s.cfg.TrustDomain.Name())
	served := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()
	select {
	case err := <-served:
		gs.Stop()
		return fmt.Errorf("workloadapi: serve: %w", err)
	case <-ctx.Done():
	}
	cancel() // streams end, signatures stop
	stopped := make(chan struct{})
	go func() {
		gs.GracefulStop()
		close(stopped)
	}()
	t := time.NewTimer(drainTimeout)
	defer t.Stop()
	select {
	case <-stopped:
	case <-t.C:
		s.cfg.Log.Warn("requests still in flight after the drain timeout: closing their connections", "timeout", drainTimeout)
		gs.Stop()
		<-stopped
	}
	if err := <-served; err != nil {
		s.cfg.Log.Warn("the Workload API's server stopped with an error", "error", err)
	}
	jc.wait() // signatures under way end with runCtx
	return ctx.Err()
}
