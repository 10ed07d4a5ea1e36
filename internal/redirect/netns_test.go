package redirect_test

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"kzero.dev/kzero/internal/redirect"
	"kzero.dev/kzero/internal/redirect/netnstest"
)

// A Netns dials from inside its namespace: the connection leaves from the
// namespace's address, to a listener the other namespace holds; a refused
// port and a cancelled dial say so; after Close nothing more is dialled.
func TestNetnsDialsFromInside(t *testing.T) {
	a, b := netnstest.Pair(t)
	ln, err := redirect.ListenIn(b.Path, "0.0.0.0:7070")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, c.RemoteAddr().String())
			_ = c.Close()
		}
	}()
	fds := openFiles(t)
	ns, err := redirect.OpenNetns(a.Path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	for range 3 { // the socket thread serves one dial after another
		c, err := ns.Dial(ctx, netip.AddrPortFrom(b.IP, 7070), redirect.Mark)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(c)
		_ = c.Close()
		if err != nil {
			t.Fatal(err)
		}
		from, err := netip.ParseAddrPort(string(got))
		if err != nil || from.Addr() != a.IP {
			t.Errorf("the listener saw the connection from %q, want %s", got, a.IP)
		}
	}
	if _, err := ns.Dial(ctx, netip.AddrPortFrom(b.IP, 7071), 0); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("a dial to a closed port: %v, want connection refused", err)
	}
	done, stop := context.WithCancel(t.Context())
	stop()
	// 192.0.2.1 is routed nowhere from the namespace: the dial fails or
	// waits; either way the cancelled context ends it.
	if _, err := ns.Dial(done, netip.MustParseAddrPort("192.0.2.1:80"), 0); err == nil {
		t.Error("a dial under a cancelled context succeeded")
	}
	if err := ns.Close(); err != nil {
		t.Fatal(err)
	}
	for _, mark := range []uint32{0, redirect.Mark} {
		if _, err := ns.Dial(ctx, netip.AddrPortFrom(b.IP, 7070), mark); err == nil {
			t.Errorf("a dial with mark %#x after Close succeeded", mark)
		}
	}
	// The sockets made ahead are closed with it.
	deadline := time.Now().Add(2 * time.Second)
	for openFiles(t) > fds && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // the listener's side of the last dials closing
	}
	if n := openFiles(t); n > fds {
		t.Errorf("%d files open after Close, %d before OpenNetns", n, fds)
	}
}

func openFiles(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
