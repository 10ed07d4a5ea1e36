package workloadapi

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"
)

// A request message over maxRequestBytes is refused by gRPC before it is
// decoded; one just under it reaches the handler.
func TestRequestOverTheSizeLimit(t *testing.T) {
	e := start(t, nil)
	c := e.raw(t)
	_, err := c.ValidateJWTSVID(withHeader(t.Context()), &workload.ValidateJWTSVIDRequest{Audience: audience, Svid: strings.Repeat("a", maxRequestBytes)})
	wantStatus(t, err, codes.ResourceExhausted, "grpc: received message larger than max (131113 vs. 131072)")
	_, err = c.ValidateJWTSVID(withHeader(t.Context()), &workload.ValidateJWTSVIDRequest{Audience: audience, Svid: strings.Repeat("a", maxRequestBytes-100)})
	wantStatus(t, err, codes.InvalidArgument, "jwtsvid: unable to parse JWT token")
}

// One process holds at most MaxConnsPerProcess connections: the next is
// closed at once, and logged once.
func TestConnectionsPerProcess(t *testing.T) {
	logs := &lockedBuffer{}
	e := start(t, func(c *Config) {
		c.MaxConnsPerProcess = 2
		c.Log = slog.New(slog.NewJSONHandler(logs, nil))
	})
	call := func(c workload.SpiffeWorkloadAPIClient) error {
		return fetchX509Bundles(withHeader(t.Context()), e, c)
	}
	firstConn, first := e.rawConn(t)
	_, second := e.rawConn(t)
	for i, c := range []workload.SpiffeWorkloadAPIClient{first, second} {
		if err := call(c); err != nil {
			t.Fatalf("connection %d: %v", i+1, err)
		}
	}
	for range 2 {
		if err := call(e.raw(t)); codeOf(err) != codes.Unavailable {
			t.Fatalf("a third connection: %v, want Unavailable (closed)", err)
		}
	}
	if n := strings.Count(logs.String(), "a caller has the most connections open to the Workload API it may"); n != 1 {
		t.Errorf("%d log lines of the refusal, want 1:\n%s", n, logs)
	}
	// Once one closes, another may open.
	if err := firstConn.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for call(e.raw(t)) != nil {
		if time.Now().After(deadline) {
			t.Fatal("no new connection after one closed")
		}
	}
}

// One process holds at most MaxStreamsPerProcess streams, over all its
// connections.
func TestStreamsPerProcess(t *testing.T) {
	e := start(t, func(c *Config) { c.MaxStreamsPerProcess = 2 })
	ctx, cancel := context.WithCancel(withHeader(t.Context()))
	defer cancel()
	for _, c := range []workload.SpiffeWorkloadAPIClient{e.raw(t), e.raw(t)} {
		s, err := c.FetchX509Bundles(ctx, &workload.X509BundlesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	c := e.raw(t)
	err := fetchJWTBundles(withHeader(t.Context()), e, c)
	wantStatus(t, err, codes.ResourceExhausted, "the caller has 2 streams open to the agent, the most one pod (or process outside a pod) may: close those it does not use (one go-spiffe X509Source or JWTSource per process is enough)")
	// A unary call in flight counts as a stream does.
	_, err = c.FetchJWTSVID(withHeader(t.Context()), &workload.JWTSVIDRequest{Audience: []string{audience}})
	wantStatus(t, err, codes.ResourceExhausted, "the caller has 2 streams and calls in flight to the agent, the most one pod (or process outside a pod) may: wait for some to end")
	cancel()
	deadline := time.Now().Add(10 * time.Second)
	for fetchJWTBundles(withHeader(t.Context()), e, c) != nil {
		if time.Now().After(deadline) {
			t.Fatal("no new stream after the others ended")
		}
	}
}

// One connection carries at most maxStreamsPerConn streams at a time: the
// next waits for one to end.
func TestStreamsPerConnection(t *testing.T) {
	e := start(t, func(c *Config) { c.MaxStreamsPerProcess = 2 * maxStreamsPerConn })
	c := e.raw(t)
	ctx, cancel := context.WithCancel(withHeader(t.Context()))
	defer cancel()
	for range maxStreamsPerConn - 1 {
		s, err := c.FetchX509Bundles(ctx, &workload.X509BundlesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	lastCtx, endLast := context.WithCancel(withHeader(t.Context()))
	last, err := c.FetchX509Bundles(lastCtx, &workload.X509BundlesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := last.Recv(); err != nil {
		t.Fatal(err)
	}
	waitCtx, stop := context.WithTimeout(withHeader(t.Context()), 300*time.Millisecond)
	defer stop()
	if err := fetchX509Bundles(waitCtx, e, c); codeOf(err) != codes.DeadlineExceeded {
		t.Fatalf("stream %d on one connection: %v, want it to wait (DeadlineExceeded)", maxStreamsPerConn+1, err)
	}
	endLast()
	if err := fetchX509Bundles(withHeader(t.Context()), e, c); err != nil {
		t.Fatalf("after one stream ended: %v", err)
	}
}

// codeOf is the gRPC code of err.
func codeOf(err error) codes.Code { return grpcstatus.Code(err) }

// The limits count a caller's connections and streams in its group, so
// that a pod's processes share one allowance however many it forks, and
// bound the connections of all callers together.
func TestLimitsByGroupAndInTotal(t *testing.T) {
	pods := map[int32]string{1: "pod/a", 2: "pod/a", 3: "pod/b"}
	l := newProcessLimits(&Config{MaxConnsPerProcess: 2, MaxStreamsPerProcess: 1, MaxConns: 4,
		CallerGroup: func(pid int32) string { return pods[pid] }, Log: slog.New(slog.DiscardHandler)})
	open := func(pid int32, stream bool) (func(), bool) { return l.open(l.key(pid), stream) }
	if k := l.key(9); k != "pid/9" {
		t.Errorf("a caller in no group is counted as %q, want pid/9", k)
	}
	releaseA1, ok1 := open(1, false)
	_, ok2 := open(2, false)
	if !ok1 || !ok2 {
		t.Fatal("two connections of pod a refused")
	}
	if _, ok := open(1, false); ok {
		t.Error("a third connection of pod a, from one of its processes, was accepted")
	}
	if _, ok := open(2, true); !ok {
		t.Error("pod a's first stream refused")
	}
	if _, ok := open(1, true); ok {
		t.Error("pod a's second stream, from its other process, was accepted")
	}
	_, ok3 := open(3, false)
	_, ok9 := open(9, false)
	if !ok3 || !ok9 {
		t.Fatal("pod b's or an outside process's connection refused")
	}
	if _, ok := open(10, false); ok {
		t.Error("a fifth connection in all was accepted with MaxConns 4")
	}
	releaseA1()
	releaseA1() // counted closed once
	if _, ok := open(10, false); !ok {
		t.Error("no connection accepted after one closed")
	}
	if _, ok := open(11, false); ok {
		t.Error("a second release counted a connection closed twice")
	}
}
