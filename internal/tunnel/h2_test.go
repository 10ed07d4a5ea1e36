package tunnel_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"kzero.dev/kzero/internal/tunnel"
)

// The tunnel speaks HTTP/2 of its own: these tests hold it to Go's
// standard implementation (net/http's), both ways, as a stand-in for the
// other HBONE peers (ztunnel) that cannot run here.

func TestAStandardHTTP2ClientOpensAStream(t *testing.T) {
	w := newWorld(t)
	server := w.SVID("shop", "orders")
	ep := endpoint(t, w, server, allowAll)
	dst := echo(t)
	web := w.SVID("shop", "web")
	tc := tlsconfig.MTLSClientConfig(web, w.Bundle(), tlsconfig.AuthorizeID(server.ID))
	protocols := new(http.Protocols)
	protocols.SetHTTP2(true)
	tr := &http.Transport{TLSClientConfig: tc, Protocols: protocols}
	defer tr.CloseIdleConnections()
	pr, pw := io.Pipe()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodConnect, "https://"+ep.String(), pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = dst.String()
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT: %s", resp.Status)
	}
	go func() {
		_, _ = io.WriteString(pw, "through net/http")
		_ = pw.Close()
	}()
	got, err := io.ReadAll(resp.Body)
	if err != nil || string(got) != "THROUGH NET/HTTP" {
		t.Fatalf("read %q, %v", got, err)
	}
}

// standardEndpoint is a tunnel endpoint written with net/http's HTTP/2
// server, as the tunnel's was before it had its own: CONNECT to the
// echo server at dst, or 403 with the reason when refuse is set.
func standardEndpoint(t *testing.T, w *world, refuse string) netip.AddrPort {
	t.Helper()
	svid := w.SVID("shop", "orders")
	tc := tlsconfig.MTLSServerConfig(svid, w.Bundle(), tlsconfig.AuthorizeAny())
	tc.NextProtos = []string{"h2"}
	protocols := new(http.Protocols)
	protocols.SetHTTP2(true)
	srv := &http.Server{TLSConfig: tc, Protocols: protocols, ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			if refuse != "" {
				rw.Header().Set(tunnel.ReasonHeader, refuse)
				rw.WriteHeader(http.StatusForbidden)
				return
			}
			conn, err := net.Dial("tcp", r.Host)
			if err != nil {
				rw.WriteHeader(http.StatusBadGateway)
				return
			}
			defer conn.Close()
			rw.WriteHeader(http.StatusOK)
			rc := http.NewResponseController(rw)
			_ = rc.Flush()
			go func() {
				_, _ = io.Copy(conn, r.Body)
				_ = conn.(*net.TCPConn).CloseWrite()
			}()
			buf := make([]byte, 32<<10)
			for {
				n, err := conn.Read(buf)
				if n > 0 {
					_, _ = rw.Write(buf[:n])
					_ = rc.Flush()
				}
				if err != nil {
					return
				}
			}
		})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })
	return netip.MustParseAddrPort(ln.Addr().String())
}

func TestTheClientOpensAStreamOnAStandardHTTP2Endpoint(t *testing.T) {
	w := newWorld(t)
	id := w.SVID("shop", "orders").ID
	c := client(t, w, w.SVID("shop", "web"))
	conn, err := c.Dial(t.Context(), standardEndpoint(t, w, ""), id, echo(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msg := strings.Repeat("to net/http and back ", 5000)
	go func() {
		_, _ = io.WriteString(conn, msg)
		_ = conn.(interface{ CloseWrite() error }).CloseWrite()
	}()
	got, err := io.ReadAll(conn)
	if err != nil || string(got) != strings.ToUpper(msg) {
		t.Fatalf("read %d bytes, %v; want %d upper-cased", len(got), err, len(msg))
	}
	_, err = c.Dial(t.Context(), standardEndpoint(t, w, "no rule allows it"), id, echo(t))
	var refused *tunnel.RefusedError
	if !errors.As(err, &refused) || refused.Status != http.StatusForbidden || refused.Reason != "no rule allows it" {
		t.Fatalf("a refusal of net/http's endpoint: %v", err)
	}
}

func TestBulkBothWaysAtOnce(t *testing.T) {
	w := newWorld(t)
	server := w.SVID("shop", "orders")
	ep := endpoint(t, w, server, allowAll)
	c := client(t, w, w.SVID("shop", "web"))
	conn, err := c.Dial(t.Context(), ep, server.ID, echo(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// More than both windows, sent while the echo comes back: neither
	// side may wait for the other to read.
	msg := bytes.Repeat([]byte("abcdefghijklmnopqrstuvwxyz012345"), 24<<20/32)
	go func() {
		_, _ = conn.Write(msg)
		_ = conn.(interface{ CloseWrite() error }).CloseWrite()
	}()
	h := sha256.New()
	n, err := io.Copy(h, conn)
	if err != nil {
		t.Fatal(err)
	}
	if want := sha256.Sum256(bytes.ToUpper(msg)); n != int64(len(msg)) || !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatalf("read %d bytes back, want %d upper-cased, unchanged", n, len(msg))
	}
}

func TestADestinationThatDoesNotReadHoldsOnlyItsOwnStream(t *testing.T) {
	w := newWorld(t)
	server := w.SVID("shop", "orders")
	ep := endpoint(t, w, server, allowAll)
	c := client(t, w, w.SVID("shop", "web"))
	// A destination that accepts and never reads.
	held := make(chan net.Conn, 1)
	defer func() { (<-held).Close() }()
	stuck, err := c.Dial(t.Context(), ep, server.ID, destination(t, func(conn net.Conn) { held <- conn }))
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	go func() { _, _ = stuck.Write(make([]byte, 64<<20)) }() // far more than its window and the socket's buffers
	time.Sleep(200 * time.Millisecond)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	conn, err := c.Dial(ctx, ep, server.ID, echo(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "still flowing"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 13)
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "STILL FLOWING" {
		t.Fatalf("a second stream beside a stuck one: %q, %v", buf, err)
	}
}

func TestAStreamResetByTheDestinationIsAnError(t *testing.T) {
	w := newWorld(t)
	server := w.SVID("shop", "orders")
	ep := endpoint(t, w, server, allowAll)
	c := client(t, w, w.SVID("shop", "web"))
	reset := destination(t, func(conn net.Conn) {
		_, _ = conn.Read(make([]byte, 10))
		_ = conn.(*net.TCPConn).SetLinger(0)
		_ = conn.Close()
	})
	conn, err := c.Dial(t.Context(), ep, server.ID, reset)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = io.WriteString(conn, "hello")
	if _, err := io.ReadAll(conn); err == nil {
		t.Fatal("a stream whose destination reset it read to a clean end")
	}
}

func TestAnAnswerComingAfterTheClientGaveUpHarmsNoOtherStream(t *testing.T) {
	w := newWorld(t)
	server := w.SVID("shop", "orders")
	slow := echo(t)
	ep := endpoint(t, w, server, func(_ context.Context, r tunnel.Request) tunnel.Decision {
		if r.Destination == slow {
			time.Sleep(300 * time.Millisecond)
		}
		return tunnel.Decision{Allow: true}
	})
	c := client(t, w, w.SVID("shop", "web"))
	busy, err := c.Dial(t.Context(), ep, server.ID, echo(t))
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Dial(ctx, ep, server.ID, slow); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial past its deadline: %v", err)
	}
	time.Sleep(400 * time.Millisecond) // the answer arrives, for a stream the client has reset
	buf := make([]byte, 5)
	for _, conn := range []net.Conn{busy, nil} {
		if conn == nil {
			if conn, err = c.Dial(t.Context(), ep, server.ID, slow); err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
		}
		if _, err := io.WriteString(conn, "again"); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "AGAIN" {
			t.Fatalf("after a late answer: %q, %v", buf, err)
		}
	}
}

// rotating is an SVID source whose SVID a test replaces.
type rotating struct{ svid atomic.Pointer[x509svid.SVID] }

func (r *rotating) GetX509SVID() (*x509svid.SVID, error) { return r.svid.Load(), nil }

func TestNoStreamOpensOnAConnectionWhoseSVIDExpired(t *testing.T) {
	w := newWorld(t)
	src := new(rotating)
	short := w.SVIDFor("shop", "orders", 3*time.Second)
	src.svid.Store(short)
	id := src.svid.Load().ID
	ep, handshakes := countingEndpoint(t, w, src)
	c := client(t, w, w.SVID("shop", "web"))
	dst := echo(t)
	first, err := c.Dial(t.Context(), ep, id, dst)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	// The endpoint renews its SVID; the pooled connection was made with
	// the old one, which then expires.
	src.svid.Store(w.SVID("shop", "orders"))
	time.Sleep(time.Until(short.Certificates[0].NotAfter) + 500*time.Millisecond)
	second, err := c.Dial(t.Context(), ep, id, dst)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if n := handshakes.Load(); n != 2 {
		t.Errorf("%d connections after the endpoint's SVID expired, want a second one for the new stream", n)
	}
	// The stream opened before goes on.
	for _, conn := range []net.Conn{first, second} {
		if _, err := io.WriteString(conn, "on"); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 2)
		if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "ON" {
			t.Fatalf("%q, %v", buf, err)
		}
	}
}

// destination is a TCP server on loopback that hands each connection to
// handle, in a goroutine of its own.
func destination(t testing.TB, handle func(net.Conn)) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go handle(conn)
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String())
}
