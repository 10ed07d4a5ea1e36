package mesh_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"golang.org/x/sys/unix"

	"kzero.dev/kzero/internal/ca/svidtest"
	"kzero.dev/kzero/internal/mesh"
	"kzero.dev/kzero/internal/redirect"
	"kzero.dev/kzero/internal/redirect/netnstest"
	"kzero.dev/kzero/internal/tunnel"
)

var td = spiffeid.RequireTrustDomainFromString("cluster.local")

// events collects a pod's events.
type events struct {
	mu  sync.Mutex
	all []mesh.Event
}

func (e *events) add(ev mesh.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.all = append(e.all, ev)
}

// wait returns the first event of kind, waiting up to 5 s for it.
func (e *events) wait(t *testing.T, kind mesh.EventKind) mesh.Event {
	t.Helper()
	return e.waitFor(t, func(ev mesh.Event) bool { return ev.Kind == kind })
}

// waitFor returns the first event that match says is the one, waiting up
// to 5 s for it.
func (e *events) waitFor(t *testing.T, match func(mesh.Event) bool) mesh.Event {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		e.mu.Lock()
		for _, ev := range e.all {
			if match(ev) {
				e.mu.Unlock()
				return ev
			}
		}
		e.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	t.Fatalf("no such event; the events: %+v", e.all)
	return mesh.Event{}
}

// resolver: the server pod's ports are in the mesh, but for 8082, which
// stands for a destination outside it.
type resolver struct {
	server netip.Addr
	id     spiffeid.ID
}

func (r resolver) Resolve(_ context.Context, dst netip.AddrPort) (mesh.Destination, error) {
	if dst.Addr() != r.server || dst.Port() == 8082 {
		return mesh.Destination{}, nil
	}
	return mesh.Destination{Mesh: true, Endpoint: netip.AddrPortFrom(r.server, redirect.TunnelPort), ID: r.id, Addr: dst}, nil
}

// sniff records every frame on dev in netns until the returned function
// is called, which returns them: a raw packet socket, as tcpdump opens.
func sniff(t *testing.T, netns, dev string) func() []byte {
	t.Helper()
	var fd int
	err := redirect.Do(netns, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			return err
		}
		// Reads wake every 50 ms, so that stopping drains what is queued.
		return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 50000})
	})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []byte
	var stopping atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				if stopping.Load() {
					return // nothing more queued
				}
				continue
			}
			if err != nil {
				return
			}
			mu.Lock()
			seen = append(seen, buf[:n]...)
			mu.Unlock()
		}
	}()
	var once sync.Once
	stop := func() []byte {
		once.Do(func() {
			stopping.Store(true)
			<-done
			_ = unix.Close(fd)
		})
		mu.Lock()
		defer mu.Unlock()
		return seen
	}
	t.Cleanup(func() { stop() })
	return stop
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// waitMetric waits up to 5 s for the sample named series (as the text
// format writes it) to have value want.
func waitMetric(t *testing.T, reg *prometheus.Registry, series string, want float64) {
	t.Helper()
	var last string
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		last = ""
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for _, mf := range mfs {
			if _, err := expfmt.MetricFamilyToText(&b, mf); err != nil {
				t.Fatal(err)
			}
		}
		for _, line := range strings.Split(b.String(), "\n") {
			if rest, ok := strings.CutPrefix(line, series+" "); ok {
				last = rest
				var got float64
				if _, err := fmt.Sscan(rest, &got); err == nil && got == want {
					return
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("%s = %q, want %v", series, last, want)
}

func addrPortOf(a net.Addr) netip.AddrPort { return a.(*net.TCPAddr).AddrPort() }

func TestPodsTalkThroughTheTunnelOnly(t *testing.T) {
	client, server := netnstest.Pair(t)
	ca := svidtest.New(t, td)
	web, orders := ca.SVID("shop", "web"), ca.SVID("shop", "orders")

	var clientEvents, serverEvents events
	clientReg, serverReg := prometheus.NewRegistry(), prometheus.NewRegistry()
	clientMetrics, err := mesh.NewMetrics(clientReg)
	if err != nil {
		t.Fatal(err)
	}
	serverMetrics, err := mesh.NewMetrics(serverReg)
	if err != nil {
		t.Fatal(err)
	}
	metricsOf := map[*events]*mesh.Metrics{&clientEvents: clientMetrics, &serverEvents: serverMetrics}
	start := func(ns netnstest.NS, svid *x509svid.SVID, ev *events, mode mesh.Mode) *mesh.Pod {
		t.Helper()
		cfg := mesh.PodConfig{
			Netns: ns.Path, Name: "shop/" + ns.Name, IPs: []netip.Addr{ns.IP},
			SVID: svid, Bundle: ca.Bundle(), Resolver: resolver{server: server.IP, id: orders.ID},
			Authorize: func(_ context.Context, r tunnel.Request) tunnel.Decision {
				if r.Source == web.ID && r.Destination.Port() == 8080 {
					return tunnel.Decision{Allow: true, Reason: "policy shop/orders rule 0"}
				}
				return tunnel.Decision{Reason: fmt.Sprintf("policy shop/orders: no rule allows %s to port %d", r.Source, r.Destination.Port())}
			},
			Mode: mode, OnEvent: ev.add, Metrics: metricsOf[ev],
		}
		p, err := mesh.Start(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := redirect.Install(ns.Path, redirect.Config{}); err != nil {
			t.Fatal(err)
		}
		return p
	}
	clientPod := start(client, web, &clientEvents, mesh.Strict)
	serverPod := start(server, orders, &serverEvents, mesh.Strict)
	t.Cleanup(func() { _ = serverPod.Close() })
	netnstest.Upper(t, server.Path, 8080)
	netnstest.Upper(t, server.Path, 8081)
	netnstest.Upper(t, server.Path, 8082)
	netnstest.Upper(t, client.Path, 9090)

	t.Run("an allowed call goes through the tunnel, and no plain text crosses the wire", func(t *testing.T) {
		marker := fmt.Sprintf("kzero-marker-%d", time.Now().UnixNano())
		stop := sniff(t, server.Path, server.Dev)
		got, err := netnstest.Call(t, client.Path, netip.AddrPortFrom(server.IP, 8080), 0, marker)
		wire := stop()
		if err != nil || got != strings.ToUpper(marker) {
			t.Fatalf("the call: %q, %v; want the upper-cased marker", got, err)
		}
		if len(wire) < 1000 {
			t.Fatalf("the capture on the wire holds %d bytes: it saw nothing", len(wire))
		}
		if bytes.Contains(wire, []byte(marker)) || bytes.Contains(wire, []byte(strings.ToUpper(marker))) {
			t.Error("the marker crossed the wire in plain text")
		}
		ev := serverEvents.wait(t, mesh.InboundTunnel)
		if ev.Source != web.ID || ev.To != netip.AddrPortFrom(server.IP, 8080) {
			t.Errorf("the server's side saw %+v, want %s to port 8080", ev, web.ID)
		}
		clientEvents.wait(t, mesh.OutboundTunnel)

		// The metrics of both sides, once the connection has ended.
		n := float64(len(marker))
		waitMetric(t, clientReg, `kzero_mesh_bytes_total{direction="outbound",way="sent"}`, n)
		waitMetric(t, clientReg, `kzero_mesh_bytes_total{direction="outbound",way="received"}`, n)
		waitMetric(t, serverReg, `kzero_mesh_bytes_total{direction="inbound",way="sent"}`, n)
		waitMetric(t, serverReg, `kzero_mesh_bytes_total{direction="inbound",way="received"}`, n)
		waitMetric(t, clientReg, `kzero_mesh_connections_total{decision="outbound-tunnel"}`, 1)
		waitMetric(t, serverReg, `kzero_mesh_connections_total{decision="inbound-tunnel"}`, 1)
		waitMetric(t, clientReg, `kzero_mesh_tunnel_open_seconds_count`, 1)
		waitMetric(t, clientReg, `kzero_mesh_active_connections{direction="outbound"}`, 0)
		waitMetric(t, serverReg, `kzero_mesh_active_connections{direction="inbound"}`, 0)
	})

	t.Run("a denied call is reset at once, and says why", func(t *testing.T) {
		start := time.Now()
		_, err := netnstest.Call(t, client.Path, netip.AddrPortFrom(server.IP, 8081), 0, "hello")
		t.Logf("the denied call ended in %s: %v", time.Since(start).Round(time.Millisecond), err)
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("the denied call: %v, want a connection reset", err)
		}
		ev := clientEvents.wait(t, mesh.OutboundRefused)
		if !strings.Contains(ev.Reason, "no rule allows spiffe://cluster.local/ns/shop/sa/web to port 8081") {
			t.Errorf("the client's refusal says %q", ev.Reason)
		}
		serverEvents.wait(t, mesh.InboundRefused)
	})

	t.Run("plain text from outside the mesh is refused in strict mode", func(t *testing.T) {
		// Marked: it leaves the server's namespace uncaptured, as from a
		// pod that is not enrolled.
		_, err := netnstest.Call(t, server.Path, netip.AddrPortFrom(client.IP, 9090), redirect.Mark, "hello")
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("plain text to a strict pod: %v, want a reset", err)
		}
		clientEvents.wait(t, mesh.InboundPlaintextRefused)
	})

	t.Run("a peer cannot use the pod as a relay", func(t *testing.T) {
		c, err := tunnel.NewClient(tunnel.ClientConfig{SVID: web, Bundle: ca.Bundle(),
			Dial: func(ctx context.Context, _, addr string) (net.Conn, error) {
				return redirect.DialIn(ctx, client.Path, netip.MustParseAddrPort(addr), redirect.Mark)
			}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseIdle()
		_, err = c.Dial(t.Context(), netip.AddrPortFrom(server.IP, redirect.TunnelPort), orders.ID, netip.AddrPortFrom(client.IP, 9090))
		if !tunnel.IsRefused(err) || !strings.Contains(err.Error(), "relays no stream") {
			t.Errorf("a stream through the server to another address: %v, want refused", err)
		}
		// Nor into the tunnel's own ports, on its own address.
		for _, port := range []uint16{redirect.OutboundPort, redirect.InboundPort, redirect.TunnelPort} {
			_, err = c.Dial(t.Context(), netip.AddrPortFrom(server.IP, redirect.TunnelPort), orders.ID, netip.AddrPortFrom(server.IP, port))
			if !tunnel.IsRefused(err) || !strings.Contains(err.Error(), "the tunnel's own") {
				t.Errorf("a stream to the server's own port %d: %v, want refused", port, err)
			}
		}
	})

	t.Run("closing the pod ends the connections it carries", func(t *testing.T) {
		c, err := redirect.DialIn(t.Context(), client.Path, netip.AddrPortFrom(server.IP, 8080), 0)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, "held open"); err != nil {
			t.Fatal(err)
		}
		// The event names the application's own address, as IPv4.
		clientEvents.waitFor(t, func(e mesh.Event) bool { return e.Kind == mesh.OutboundTunnel && e.From == addrPortOf(c.LocalAddr()) })
		closed := make(chan error, 1)
		go func() { closed <- clientPod.Close() }()
		select {
		case <-closed:
		case <-time.After(10 * time.Second):
			t.Fatal("Close did not return while a connection was open")
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadAll(c); errors.Is(err, os.ErrDeadlineExceeded) {
			t.Error("the application's connection outlived the pod's Close")
		}
	})

	t.Run("plain text is let through, and reported, in permissive mode", func(t *testing.T) {
		clientPod = start(client, web, &clientEvents, mesh.Permissive)
		got, err := netnstest.Call(t, server.Path, netip.AddrPortFrom(client.IP, 9090), redirect.Mark, "hello")
		if err != nil || got != "HELLO" {
			t.Fatalf("plain text to a permissive pod: %q, %v", got, err)
		}
		clientEvents.wait(t, mesh.InboundPlaintextAllowed)
	})

	t.Run("a process of the pod connecting to the agent's own listeners is reset, not looped", func(t *testing.T) {
		// Its own address goes over loopback, which is not captured: the
		// connection reaches the listener directly.
		for _, port := range []uint16{redirect.OutboundPort, redirect.InboundPort} {
			dst := netip.AddrPortFrom(client.IP, port)
			_, err := netnstest.Call(t, client.Path, dst, 0, "hello")
			if !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("a call from inside the pod to %s: %v, want a reset", dst, err)
			}
			clientEvents.waitFor(t, func(e mesh.Event) bool {
				return e.To == dst && strings.Contains(e.Reason, "the agent's own listener")
			})
		}
	})

	t.Run("plain text addressed to another host through the pod is not relayed", func(t *testing.T) {
		// The peer routes an address that is nobody's through the
		// client pod, as a neighbour on its network could.
		foreign := netip.MustParseAddr("10.99.0.1")
		if out, err := exec.CommandContext(t.Context(), "ip", "-n", server.Name, "route", "add", foreign.String()+"/32", "via", client.IP.String()).CombinedOutput(); err != nil {
			t.Fatalf("ip route: %v: %s", err, out)
		}
		_, err := netnstest.Call(t, server.Path, netip.AddrPortFrom(foreign, 9090), redirect.Mark, "hello")
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("plain text to %s through the permissive pod: %v, want a reset", foreign, err)
		}
		ev := clientEvents.waitFor(t, func(e mesh.Event) bool {
			return e.Kind == mesh.InboundPlaintextRefused && e.To.Addr() == foreign
		})
		if !strings.Contains(ev.Reason, "relays nothing") {
			t.Errorf("the refusal says %q", ev.Reason)
		}
	})

	t.Run("a destination outside the mesh is passed through, and reported", func(t *testing.T) {
		if err := redirect.Remove(server.Path); err != nil { // the destination is not enrolled
			t.Fatal(err)
		}
		stop := sniff(t, server.Path, server.Dev)
		got, err := netnstest.Call(t, client.Path, netip.AddrPortFrom(server.IP, 8082), 0, "plain words")
		if err != nil || got != "PLAIN WORDS" {
			t.Fatalf("a call outside the mesh: %q, %v", got, err)
		}
		// The same capture sees plain text when there is some: it is
		// not blind.
		if !bytes.Contains(stop(), []byte("plain words")) {
			t.Error("the capture did not see the plain text of a passthrough call")
		}
		clientEvents.wait(t, mesh.OutboundPassthrough)
	})
	t.Cleanup(func() { _ = clientPod.Close() })
}
