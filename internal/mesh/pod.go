// Package mesh is the agent's side of one enrolled pod: the listeners it
// opens inside the pod's network namespace, where internal/redirect's
// rules send the pod's TCP, and what it does with each connection.
//
//   - Outbound (redirect.OutboundPort): the connection's original
//     destination is resolved; an enrolled destination is reached through
//     its tunnel endpoint with the pod's own SVID (internal/tunnel), and a
//     refusal resets the application's connection at once; any other
//     destination is passed through as plain TCP, and said so.
//   - The tunnel endpoint (redirect.TunnelPort): a peer's stream, once its
//     SVID verifies and the Authorize function allows it, is delivered to
//     the application on the pod's own address. A stream to another
//     address is refused: the pod is no relay.
//   - Inbound plain text (redirect.InboundPort): refused with a reset in
//     strict mode, delivered in permissive mode; either way reported.
//
// The source of an outbound connection is known by the namespace its
// listener sits in, never by its address. The agent's own connections
// leave the namespace with redirect.Mark and are not captured again.
// Every decision is an Event for the caller to audit and count.
package mesh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"kzero.dev/kzero/internal/redirect"
	"kzero.dev/kzero/internal/tunnel"
)

// Destination is what a Resolver knows of an original destination.
type Destination struct {
	// Mesh says the destination is an enrolled pod, reached through its
	// tunnel endpoint; otherwise the connection passes through in plain
	// text.
	Mesh bool
	// Endpoint is the destination pod's tunnel endpoint (its address and
	// redirect.TunnelPort).
	Endpoint netip.AddrPort
	// ID is the SPIFFE ID the endpoint must prove.
	ID spiffeid.ID
	// Addr is where the stream goes at the far end: the pod's address
	// and port (a ClusterIP already resolved to one of its endpoints).
	Addr netip.AddrPort
}

// Resolver says where an original destination leads. It must be safe for
// concurrent use.
type Resolver interface {
	Resolve(ctx context.Context, dst netip.AddrPort) (Destination, error)
}

// Mode is what the pod does with plain text sent to it from outside the
// mesh.
type Mode int

const (
	// Strict refuses it (the default).
	Strict Mode = iota
	// Permissive delivers it, and reports it, so that a namespace can be
	// enrolled before all its callers are.
	Permissive
)

// EventKind names what happened to a connection.
type EventKind string

// The kinds of Event.
const (
	// OutboundTunnel: the pod's connection went through the tunnel.
	OutboundTunnel EventKind = "outbound-tunnel"
	// OutboundRefused: the destination's endpoint refused it, or it could
	// not be opened; the application saw a reset.
	OutboundRefused EventKind = "outbound-refused"
	// OutboundPassthrough: the destination is outside the mesh; plain TCP.
	OutboundPassthrough EventKind = "outbound-passthrough"
	// InboundTunnel: a peer's stream was allowed and delivered.
	InboundTunnel EventKind = "inbound-tunnel"
	// InboundRefused: a peer's stream was refused (Reason says why).
	InboundRefused EventKind = "inbound-refused"
	// InboundPlaintextRefused: plain text from outside the mesh, strict.
	InboundPlaintextRefused EventKind = "inbound-plaintext-refused"
	// InboundPlaintextAllowed: plain text from outside the mesh,
	// permissive.
	InboundPlaintextAllowed EventKind = "inbound-plaintext-allowed"
)

// Event is one decision about one connection.
type Event struct {
	Kind EventKind
	// Source is the peer's SPIFFE ID (inbound through the tunnel) or the
	// pod's (outbound); zero when unknown (plain text).
	Source spiffeid.ID
	// From and To are the connection's addresses: its source and its
	// original destination.
	From, To netip.AddrPort
	// Reason says why, for refusals and passthroughs.
	Reason string
}

// PodConfig is what Start needs for one pod.
type PodConfig struct {
	// Netns is the pod's network namespace (a path such as
	// /proc/<pid>/ns/net).
	Netns string
	// Name names the pod in logs (namespace/name).
	Name string
	// IPs are the pod's addresses: the only ones streams are delivered to.
	IPs []netip.Addr
	// SVID is the pod's X.509-SVID; Bundle verifies peers.
	SVID   x509svid.Source
	Bundle x509bundle.Source
	// Resolver says where the pod's outbound connections lead.
	Resolver Resolver
	// Authorize decides each inbound stream.
	Authorize func(ctx context.Context, req tunnel.Request) tunnel.Decision
	// Mode is for plain text from outside the mesh, until SetMode.
	Mode Mode
	// OnEvent receives every decision; it must not block. nil: none.
	OnEvent func(Event)
	// Log receives what goes wrong; nil: none.
	Log *slog.Logger
	// Metrics counts connections, bytes and tunnel opening times; nil:
	// none. One for all the pods of a node.
	Metrics *Metrics
	// Ports override the redirect package's (for tests); 0: those.
	OutboundPort, InboundPort, TunnelPort uint16
}

// Pod serves one pod's connections until Close.
type Pod struct {
	cfg    PodConfig
	ns     *redirect.Netns // the pod's namespace, where the agent dials from
	client *tunnel.Client
	server *tunnel.Server
	lns    []net.Listener
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mode  atomic.Int64 // a Mode
	mu    sync.Mutex
	conns map[net.Conn]struct{} // the connections being carried, closed by Close
}

// SetMode changes what the pod does with plain text from outside the mesh,
// for the connections to come.
func (p *Pod) SetMode(m Mode) { p.mode.Store(int64(m)) }

// Start opens the pod's listeners inside its namespace and serves them.
// The capture rules (redirect.Install) are the caller's to install, after
// Start has returned, so that no connection is redirected to a port
// nobody listens on.
func Start(cfg PodConfig) (*Pod, error) {
	if cfg.Netns == "" || cfg.SVID == nil || cfg.Bundle == nil || cfg.Resolver == nil || cfg.Authorize == nil || len(cfg.IPs) == 0 {
		return nil, errors.New("mesh: a pod needs its namespace, addresses, SVID, the bundle, a Resolver and an Authorize function")
	}
	if cfg.OutboundPort == 0 {
		cfg.OutboundPort = redirect.OutboundPort
	}
	if cfg.InboundPort == 0 {
		cfg.InboundPort = redirect.InboundPort
	}
	if cfg.TunnelPort == 0 {
		cfg.TunnelPort = redirect.TunnelPort
	}
	onEvent := cfg.OnEvent
	if onEvent == nil {
		onEvent = func(Event) {}
	}
	cfg.OnEvent = func(e Event) {
		cfg.Metrics.decision(e.Kind)
		onEvent(e)
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	cfg.Log = cfg.Log.With("pod", cfg.Name)
	p := &Pod{cfg: cfg, conns: map[net.Conn]struct{}{}}
	p.SetMode(cfg.Mode)
	p.ctx, p.cancel = context.WithCancel(context.Background())
	var err error
	if p.ns, err = redirect.OpenNetns(cfg.Netns); err != nil {
		return nil, fmt.Errorf("mesh: pod %s: %w", cfg.Name, err)
	}
	p.client, err = tunnel.NewClient(tunnel.ClientConfig{SVID: cfg.SVID, Bundle: cfg.Bundle, Dial: p.dialOut})
	if err != nil {
		_ = p.ns.Close()
		return nil, fmt.Errorf("mesh: %w", err)
	}
	p.server, err = tunnel.NewServer(tunnel.ServerConfig{
		SVID: cfg.SVID, Bundle: cfg.Bundle, Authorize: p.authorize, Log: cfg.Log,
		Dial: func(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
			c, err := p.ns.Dial(ctx, dst, redirect.Mark)
			if err == nil {
				cfg.Metrics.carrying("inbound", 1)
			}
			return c, err
		},
		Carried: func(_ tunnel.Request, toApp, fromApp int64) {
			cfg.Metrics.carrying("inbound", -1)
			cfg.Metrics.carried("inbound", toApp, fromApp)
		},
	})
	if err != nil {
		_ = p.ns.Close()
		return nil, fmt.Errorf("mesh: %w", err)
	}
	for _, l := range []struct {
		port  uint16
		serve func(net.Listener)
	}{
		{cfg.OutboundPort, func(ln net.Listener) { p.accept(ln, p.outbound) }},
		{cfg.InboundPort, func(ln net.Listener) { p.accept(ln, p.plaintext) }},
		{cfg.TunnelPort, func(ln net.Listener) {
			if err := p.server.Serve(ln); err != nil && !errors.Is(err, net.ErrClosed) {
				cfg.Log.Error("the tunnel endpoint stopped", "error", err)
			}
		}},
	} {
		ln, err := redirect.ListenIn(cfg.Netns, net.JoinHostPort("0.0.0.0", strconv.Itoa(int(l.port))))
		if err != nil {
			_ = p.Close()
			return nil, fmt.Errorf("mesh: pod %s: %w", cfg.Name, err)
		}
		p.lns = append(p.lns, ln)
		p.wg.Go(func() { l.serve(ln) })
	}
	return p, nil
}

// Close stops the listeners and the connections under way, and waits for
// them.
func (p *Pod) Close() error {
	p.cancel()
	for _, ln := range p.lns {
		_ = ln.Close()
	}
	p.mu.Lock() // after cancel: carry, under the lock, sees ctx done
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = p.server.Shutdown(ctx)
	p.client.CloseIdle()
	p.wg.Wait()
	return p.ns.Close()
}

// dialOut connects to a tunnel endpoint from inside the pod, marked, so
// that the connection leaves from the pod's address uncaptured.
func (p *Pod) dialOut(ctx context.Context, _, addr string) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("mesh: endpoint %q: %w", addr, err)
	}
	return p.ns.Dial(ctx, ap, redirect.Mark)
}

// authorize lets a stream reach only this pod's own addresses, and none
// of the agent's ports there, then asks the configured Authorize, and
// reports the decision.
func (p *Pod) authorize(ctx context.Context, req tunnel.Request) tunnel.Decision {
	var d tunnel.Decision
	switch port := req.Destination.Port(); {
	case !slices.Contains(p.cfg.IPs, req.Destination.Addr()):
		d.Reason = fmt.Sprintf("%s is not an address of pod %s: a pod relays no stream", req.Destination.Addr(), p.cfg.Name)
	case port == p.cfg.OutboundPort || port == p.cfg.InboundPort || port == p.cfg.TunnelPort:
		d.Reason = fmt.Sprintf("port %d is the tunnel's own, not the application's", port)
	default:
		d = p.cfg.Authorize(ctx, req)
	}
	ev := Event{Kind: InboundTunnel, Source: req.Source, To: req.Destination, Reason: d.Reason}
	if !d.Allow {
		ev.Kind = InboundRefused
	}
	p.cfg.OnEvent(ev)
	return d
}

// accept hands each connection of ln to handle, until ln is closed.
func (p *Pod) accept(ln net.Listener, handle func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		p.wg.Go(func() { handle(c) })
	}
}

func (p *Pod) outbound(c net.Conn) {
	from := addrPort(c.RemoteAddr())
	dst, err := redirect.OriginalDst(c)
	if err != nil {
		p.cfg.Log.Warn("an outbound connection without its original destination", "error", err)
		reset(c)
		return
	}
	self := p.selfID()
	if p.ownListener(dst) {
		p.cfg.OnEvent(Event{Kind: OutboundRefused, Source: self, From: from, To: dst, Reason: "a connection to the agent's own listener in the pod: refused"})
		reset(c)
		return
	}
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	d, err := p.cfg.Resolver.Resolve(ctx, dst)
	if err != nil {
		p.cfg.OnEvent(Event{Kind: OutboundRefused, Source: self, From: from, To: dst, Reason: "resolve: " + err.Error()})
		reset(c)
		return
	}
	var far net.Conn
	if !d.Mesh {
		// To the address the resolver chose (a Service's endpoint, so
		// that kube-proxy does not choose again, maybe an enrolled one),
		// or the original destination.
		to := dst
		if d.Addr.IsValid() {
			to = d.Addr
		}
		far, err = p.ns.Dial(ctx, to, redirect.Mark)
		if err != nil {
			p.cfg.OnEvent(Event{Kind: OutboundRefused, Source: self, From: from, To: dst, Reason: err.Error()})
			reset(c)
			return
		}
		p.cfg.OnEvent(Event{Kind: OutboundPassthrough, Source: self, From: from, To: dst, Reason: "the destination is outside the mesh"})
	} else {
		start := time.Now()
		far, err = p.client.Dial(ctx, d.Endpoint, d.ID, d.Addr)
		p.cfg.Metrics.opened(time.Since(start))
		if err != nil {
			reason := err.Error()
			var r *tunnel.RefusedError
			if errors.As(err, &r) {
				reason = r.Reason
			}
			p.cfg.OnEvent(Event{Kind: OutboundRefused, Source: self, From: from, To: dst, Reason: reason})
			reset(c)
			return
		}
		p.cfg.OnEvent(Event{Kind: OutboundTunnel, Source: self, From: from, To: dst})
	}
	p.carry("outbound", c, far)
}

// carry pipes a, the side that connected, and b, counts their bytes under
// direction, and lets Close end them.
func (p *Pod) carry(direction string, a, b net.Conn) {
	p.mu.Lock()
	if p.ctx.Err() != nil { // Close has begun
		p.mu.Unlock()
		_ = a.Close()
		_ = b.Close()
		return
	}
	p.conns[a], p.conns[b] = struct{}{}, struct{}{}
	p.mu.Unlock()
	p.cfg.Metrics.carrying(direction, 1)
	sent, received := tunnel.Pipe(a, b)
	p.cfg.Metrics.carrying(direction, -1)
	p.cfg.Metrics.carried(direction, sent, received)
	p.mu.Lock()
	delete(p.conns, a)
	delete(p.conns, b)
	p.mu.Unlock()
}

// plaintext handles a connection sent to the pod from outside the mesh.
func (p *Pod) plaintext(c net.Conn) {
	from := addrPort(c.RemoteAddr())
	dst, err := redirect.OriginalDst(c)
	if err != nil {
		reset(c)
		return
	}
	// The capture redirects whatever reaches the pod, also a packet
	// addressed to another host through it: such a connection is never
	// passed on, or the pod would be a relay around the mesh.
	if !slices.Contains(p.cfg.IPs, dst.Addr()) {
		p.cfg.OnEvent(Event{Kind: InboundPlaintextRefused, From: from, To: dst,
			Reason: fmt.Sprintf("%s is not an address of pod %s: a pod relays nothing", dst.Addr(), p.cfg.Name)})
		reset(c)
		return
	}
	if p.ownListener(dst) {
		p.cfg.OnEvent(Event{Kind: InboundPlaintextRefused, From: from, To: dst, Reason: "a connection to the agent's own listener in the pod: refused"})
		reset(c)
		return
	}
	if Mode(p.mode.Load()) != Permissive {
		p.cfg.OnEvent(Event{Kind: InboundPlaintextRefused, From: from, To: dst,
			Reason: "plain text from outside the mesh to a pod of a strict namespace"})
		reset(c)
		return
	}
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	app, err := p.ns.Dial(ctx, dst, redirect.Mark)
	if err != nil {
		reset(c)
		return
	}
	p.cfg.OnEvent(Event{Kind: InboundPlaintextAllowed, From: from, To: dst,
		Reason: "plain text from outside the mesh, allowed: the namespace is permissive"})
	p.carry("inbound", c, app)
}

func (p *Pod) selfID() spiffeid.ID {
	s, err := p.cfg.SVID.GetX509SVID()
	if err != nil {
		return spiffeid.ID{}
	}
	return s.ID
}

// ownListener reports whether dst is one of the agent's listeners in the
// pod, which a process of the pod can connect to directly (its own address
// and loopback are not captured): passing such a connection on would
// connect it to the same listener again, for ever.
func (p *Pod) ownListener(dst netip.AddrPort) bool {
	port := dst.Port()
	if port != p.cfg.OutboundPort && port != p.cfg.InboundPort && port != p.cfg.TunnelPort {
		return false
	}
	return dst.Addr().IsLoopback() || dst.Addr().IsUnspecified() || slices.Contains(p.cfg.IPs, dst.Addr())
}

// reset closes c with a TCP reset, so that the application learns at once
// that its connection was refused.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort()
	}
	return netip.AddrPort{}
}
