package workloadapi

import (
	"context"
	"log/slog"
	"net"
	"strconv"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Bounds of what callers may ask of the server. Every pod of the node can
// reach the socket, enrolled or not, so that no process can take the
// agent's memory for the others'.
const (
	// DefaultMaxConnsPerProcess bounds the connections one process holds
	// open. go-spiffe's client uses one; Envoy, Java and the others a few.
	DefaultMaxConnsPerProcess = 16
	// DefaultMaxStreamsPerProcess bounds the streams (FetchX509SVID,
	// FetchX509Bundles, FetchJWTBundles) and unary calls in flight one
	// caller holds over all its connections; go-spiffe's X509Source,
	// JWTSource and BundleSource hold one or two streams each.
	DefaultMaxStreamsPerProcess = 64
	// DefaultMaxConns bounds the connections of all callers together, far
	// above what a node's pods hold (kubelet runs at most a few hundred
	// pods), so that the agent's memory stays within its limit whatever
	// its callers do.
	DefaultMaxConns = 4096
	// maxStreamsPerConn is the HTTP/2 limit of concurrent streams (and
	// unary calls) on one connection, RFC 9113's advised minimum: a
	// client's calls over it wait their turn.
	maxStreamsPerConn = 100
	// maxRequestBytes bounds a request message. The largest a client
	// needs is ValidateJWTSVID of a token of another trust domain, a few
	// KB; FetchJWTSVID's audience is at most 16 × 2048 bytes, and an
	// audience over that (100 KB, say) is let through to be refused with
	// InvalidArgument, saying the limits. gRPC's default is 4 MiB.
	maxRequestBytes = 128 << 10
	// maxCallsInFlight bounds the unary calls of all callers together the
	// agent holds at once, each with its request: the rest wait their
	// turn (a call takes well under a millisecond, or a signature).
	maxCallsInFlight = 128
	// flowWindow is the HTTP/2 flow-control window of every connection
	// and stream, fixed (grpc-go's own default is 64 KiB, grown with the
	// link's bandwidth): a connection holds at most this much of what its
	// peer sent and the agent has not read.
	flowWindow = 64 << 10
)

// processLimits counts the connections and streams of every caller
// connected to the server, by the group Config.CallerGroup puts it in (its
// pod, for the agent) or else by process, and refuses those over the
// limits, and connections over the total. It is safe for concurrent use.
type processLimits struct {
	maxConns, maxStreams, maxTotal int
	group                          func(pid int32) string
	log                            *slog.Logger

	// calls holds a token for each unary call in flight.
	calls chan struct{}

	mu    sync.Mutex
	total int                    // guarded by mu: connections open
	procs map[string]*processUse // guarded by mu; no entry with nothing open
}

// processUse is what one process holds open. Guarded by processLimits.mu.
type processUse struct {
	conns, streams int
	// warned: the process was refused and it was logged; it is logged
	// again only after its use went under the limits.
	warned bool
}

func newProcessLimits(cfg *Config) *processLimits {
	return &processLimits{maxConns: cfg.MaxConnsPerProcess, maxStreams: cfg.MaxStreamsPerProcess, maxTotal: cfg.MaxConns,
		group: cfg.CallerGroup, log: cfg.Log, procs: map[string]*processUse{}, calls: make(chan struct{}, maxCallsInFlight)}
}

// key is what the limits count pid's connections and streams under: its
// group, or the process alone.
func (l *processLimits) key(pid int32) string {
	if l.group != nil {
		if g := l.group(pid); g != "" {
			return g
		}
	}
	return "pid/" + strconv.FormatInt(int64(pid), 10)
}

// open counts one more connection (or stream) under key, and returns the
// function that counts it closed, or false if key has the most it may, or
// (for a connection) all callers together have. A refusal is logged once
// until the caller is under the limit again.
func (l *processLimits) open(key string, stream bool) (release func(), ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !stream && l.total >= l.maxTotal {
		if l.total == l.maxTotal {
			l.log.Warn("the Workload API has the most connections open it may: refusing more until some close", "limit", l.maxTotal)
		}
		return nil, false
	}
	u := l.procs[key]
	if u == nil {
		u = &processUse{}
		l.procs[key] = u
	}
	n, limit, what := &u.conns, l.maxConns, "connections"
	if stream {
		n, limit, what = &u.streams, l.maxStreams, "streams"
	}
	if *n >= limit {
		if !u.warned {
			u.warned = true
			l.log.Warn("a caller has the most "+what+" open to the Workload API it may: refusing more until it closes some",
				"caller", key, "limit", limit)
		}
		if u.conns == 0 && u.streams == 0 {
			delete(l.procs, key)
		}
		return nil, false
	}
	*n++
	if !stream {
		l.total++
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			*n--
			if !stream {
				l.total--
			}
			u.warned = false
			if u.conns == 0 && u.streams == 0 {
				delete(l.procs, key)
			}
		})
	}, true
}

// stream is the stream interceptor that counts the streams of each
// process.
func (l *processLimits) stream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	info, ok := callerInfoFrom(ss.Context())
	if !ok {
		return status.Error(codes.PermissionDenied, msgNoPeer)
	}
	key := info.limitKey
	if key == "" {
		key = l.key(info.PID)
	}
	release, ok := l.open(key, true)
	if !ok {
		return status.Errorf(codes.ResourceExhausted,
			"the caller has %d streams open to the agent, the most one pod (or process outside a pod) may: close those it does not use (one go-spiffe X509Source or JWTSource per process is enough)",
			l.maxStreams)
	}
	defer release()
	return handler(srv, ss)
}

// unary is the unary interceptor that counts each caller's calls in
// flight with its streams, so that a pod's calls, each holding its
// request, are bounded as its streams are.
func (l *processLimits) unary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	info, ok := callerInfoFrom(ctx)
	if !ok {
		return nil, status.Error(codes.PermissionDenied, msgNoPeer)
	}
	key := info.limitKey
	if key == "" {
		key = l.key(info.PID)
	}
	release, ok := l.open(key, true)
	if !ok {
		return nil, status.Errorf(codes.ResourceExhausted,
			"the caller has %d streams and calls in flight to the agent, the most one pod (or process outside a pod) may: wait for some to end",
			l.maxStreams)
	}
	defer release()
	select {
	case l.calls <- struct{}{}:
		defer func() { <-l.calls }()
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	return handler(ctx, req)
}

// limitedListener accepts unix socket connections, reads the peer's
// credentials, and closes at once those of a process that has the most
// connections it may.
type limitedListener struct {
	net.Listener
	limits *processLimits
}

// Accept returns the next connection within the limits, as a
// *callerConn.
func (l *limitedListener) Accept() (net.Conn, error) {
	for {
		conn, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		uc, ok := conn.(*net.UnixConn)
		if !ok {
			// peerCredentials refuses it, saying why.
			return conn, nil
		}
		c, err := peerOf(uc)
		if err != nil {
			l.limits.log.Warn("the Workload API could not read a caller's credentials: connection closed", "error", err)
			_ = conn.Close()
			continue
		}
		key := l.limits.key(c.PID)
		release, ok := l.limits.open(key, false)
		if !ok {
			_ = conn.Close()
			continue
		}
		return &callerConn{UnixConn: uc, caller: c, limitKey: key, release: release}, nil
	}
}

// callerConn is a connection of the Workload API's socket, with the
// credentials of its peer read when it was accepted. Closing it counts it
// closed.
type callerConn struct {
	*net.UnixConn
	caller   Caller
	limitKey string // what the limits count it under
	release  func()
}

// Close closes the connection and counts it closed.
func (c *callerConn) Close() error {
	defer c.release()
	return c.UnixConn.Close()
}

// checkLimits checks the limits of cfg; zero means the defaults.
func checkLimits(cfg *Config, bad func(field, format string, args ...any)) {
	for _, f := range []struct {
		field string
		v     int
	}{{"maxConnsPerProcess", cfg.MaxConnsPerProcess}, {"maxStreamsPerProcess", cfg.MaxStreamsPerProcess}, {"maxConns", cfg.MaxConns}} {
		if f.v < 0 {
			bad(f.field, "must not be negative, got %d", f.v)
		}
	}
}
