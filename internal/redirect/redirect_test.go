package redirect_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"kzero.dev/kzero/internal/redirect"
	"kzero.dev/kzero/internal/redirect/netnstest"
)

// pair is a pod's namespace and a peer's, joined by a veth.
func pair(t *testing.T) (pod, peer string, podIP, peerIP netip.Addr) {
	t.Helper()
	a, b := netnstest.Pair(t)
	return a.Path, b.Path, a.IP, b.IP
}

// accepted is what a listener accepted: the connection's original
// destination, and its source.
type accepted struct {
	dst, src netip.AddrPort
	err      error
}

// listen opens a listener in netns on port and reports every connection
// it accepts, then closes it after writing "via <port>".
func listen(t *testing.T, netns string, port int) <-chan accepted {
	t.Helper()
	ln, err := redirect.ListenIn(netns, fmt.Sprintf("0.0.0.0:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	ch := make(chan accepted, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			dst, derr := redirect.OriginalDst(c)
			ch <- accepted{dst: dst, src: netip.MustParseAddrPort(c.RemoteAddr().String()), err: derr}
			_, _ = fmt.Fprintf(c, "via %d", port)
			_ = c.Close()
		}
	}()
	return ch
}

// call connects from netns to addr (marked with mark) and returns what the
// listener that answered wrote.
func call(t *testing.T, netns string, addr netip.AddrPort, mark uint32) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	c, err := redirect.DialIn(ctx, netns, addr, mark)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func next(t *testing.T, ch <-chan accepted) accepted {
	t.Helper()
	select {
	case a := <-ch:
		return a
	case <-time.After(5 * time.Second):
		t.Fatal("no connection was accepted")
		return accepted{}
	}
}

func TestCapturesInsideThePodsNamespace(t *testing.T) {
	pod, peer, podIP, peerIP := pair(t)
	exclude := netip.MustParseAddr("10.213.0.3") // the node's, in a real pod
	if err := redirect.Install(pod, redirect.Config{ExcludeSources: []netip.Addr{exclude}}); err != nil {
		t.Fatal(err)
	}
	outbound := listen(t, pod, redirect.OutboundPort)
	inbound := listen(t, pod, redirect.InboundPort)
	tunnel := listen(t, pod, redirect.TunnelPort)
	app := listen(t, pod, 9090)
	server := listen(t, peer, 8080)

	t.Run("the pod's outbound connection reaches the agent's listener, with its destination", func(t *testing.T) {
		dst := netip.AddrPortFrom(peerIP, 8080)
		if got := call(t, pod, dst, 0); got != fmt.Sprintf("via %d", redirect.OutboundPort) {
			t.Fatalf("the pod's call to %s was answered %q, want by the outbound listener", dst, got)
		}
		a := next(t, outbound)
		if a.err != nil || a.dst != dst || a.src.Addr() != podIP {
			t.Errorf("outbound listener saw %+v, want original destination %s from %s", a, dst, podIP)
		}
	})

	t.Run("the agent's own marked connection passes", func(t *testing.T) {
		dst := netip.AddrPortFrom(peerIP, 8080)
		if got := call(t, pod, dst, redirect.Mark); got != "via 8080" {
			t.Fatalf("the agent's marked call to %s was answered %q, want by the server itself", dst, got)
		}
		if a := next(t, server); a.err == nil {
			t.Errorf("the server's connection reports an original destination %s: it was redirected", a.dst)
		}
	})

	t.Run("loopback inside the pod passes", func(t *testing.T) {
		if got := call(t, pod, netip.MustParseAddrPort("127.0.0.1:9090"), 0); got != "via 9090" {
			t.Fatalf("a call on the pod's loopback was answered %q", got)
		}
		next(t, app)
	})

	t.Run("a connection to the pod reaches the inbound listener, with the pod's address", func(t *testing.T) {
		dst := netip.AddrPortFrom(podIP, 9090)
		if got := call(t, peer, dst, 0); got != fmt.Sprintf("via %d", redirect.InboundPort) {
			t.Fatalf("the peer's call to %s was answered %q, want by the inbound listener", dst, got)
		}
		a := next(t, inbound)
		if a.err != nil || a.dst != dst || a.src.Addr() != peerIP {
			t.Errorf("inbound listener saw %+v, want original destination %s from %s", a, dst, peerIP)
		}
	})

	t.Run("the tunnel's port is not captured", func(t *testing.T) {
		dst := netip.AddrPortFrom(podIP, redirect.TunnelPort)
		if got := call(t, peer, dst, 0); got != fmt.Sprintf("via %d", redirect.TunnelPort) {
			t.Fatalf("the peer's call to the tunnel port was answered %q", got)
		}
		next(t, tunnel)
	})

	t.Run("install again replaces, and an excluded source is not captured", func(t *testing.T) {
		if err := redirect.Install(pod, redirect.Config{ExcludeSources: []netip.Addr{peerIP}}); err != nil {
			t.Fatal(err)
		}
		if got := call(t, peer, netip.AddrPortFrom(podIP, 9090), 0); got != "via 9090" {
			t.Fatalf("a call from the excluded %s was answered %q, want by the application", peerIP, got)
		}
		next(t, app)
	})

	t.Run("remove restores plain routing", func(t *testing.T) {
		if ok, err := redirect.Installed(pod); err != nil || !ok {
			t.Fatalf("Installed after a second Install: %v, %v", ok, err)
		}
		if err := redirect.Remove(pod); err != nil {
			t.Fatal(err)
		}
		if ok, err := redirect.Installed(pod); err != nil || ok {
			t.Fatalf("Installed after Remove: %v, %v", ok, err)
		}
		if got := call(t, pod, netip.AddrPortFrom(peerIP, 8080), 0); got != "via 8080" {
			t.Fatalf("after Remove the pod's call was answered %q, want by the server", got)
		}
		next(t, server)
		if err := redirect.Remove(pod); err != nil {
			t.Errorf("removing rules that are not there: %v", err)
		}
	})
}

func TestRefusesWhatItCannotDo(t *testing.T) {
	if err := redirect.Install("/nonexistent/netns", redirect.Config{}); err == nil || !strings.Contains(err.Error(), "open the network namespace") {
		t.Errorf("Install into a missing namespace: %v", err)
	}
	if err := redirect.Install("/proc/self/ns/net", redirect.Config{ExcludeSources: []netip.Addr{netip.MustParseAddr("::1")}}); err == nil {
		t.Error("an IPv6 excluded source was accepted")
	}
	c, s := net.Pipe()
	defer c.Close()
	defer s.Close()
	if _, err := redirect.OriginalDst(c); err == nil {
		t.Error("OriginalDst of a pipe")
	}
}
