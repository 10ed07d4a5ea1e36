package tunnel_test

import (
	"context"
	"io"
	"net"
	"net/netip"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"kzero.dev/kzero/internal/tunnel"
)

// The cost of a stream beside a direct TCP connection to the same echo
// server on loopback: a new stream over the pooled connection (CONNECT,
// 100 bytes there and back, close), and one stream's bulk throughput.
//
//	go test -run '^$' -bench . -benchmem ./internal/tunnel/

func BenchmarkDirectNewConnection(b *testing.B) {
	dst := echo(b)
	msg := make([]byte, 100)
	buf := make([]byte, 100)
	for b.Loop() {
		c, err := net.Dial("tcp", dst.String())
		if err != nil {
			b.Fatal(err)
		}
		roundTrip(b, c, msg, buf)
		_ = c.Close()
	}
}

func BenchmarkTunnelNewStream(b *testing.B) {
	c, ep, id, dst := benchTunnel(b)
	msg := make([]byte, 100)
	buf := make([]byte, 100)
	for b.Loop() {
		s, err := c.Dial(context.Background(), ep, id, dst)
		if err != nil {
			b.Fatal(err)
		}
		roundTrip(b, s, msg, buf)
		_ = s.Close()
	}
}

func BenchmarkDirectRoundTrip(b *testing.B) {
	c, err := net.Dial("tcp", echo(b).String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	msg := make([]byte, 100)
	buf := make([]byte, 100)
	for b.Loop() {
		roundTrip(b, c, msg, buf)
	}
}

// BenchmarkTunnelRoundTrip is a request and its answer, 100 bytes each
// way, over a stream that stays open: the tunnel's cost per request of a
// connection kept alive.
func BenchmarkTunnelRoundTrip(b *testing.B) {
	c, ep, id, dst := benchTunnel(b)
	s, err := c.Dial(context.Background(), ep, id, dst)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	msg := make([]byte, 100)
	buf := make([]byte, 100)
	for b.Loop() {
		roundTrip(b, s, msg, buf)
	}
}

func BenchmarkDirectBulk(b *testing.B) {
	dst := echo(b)
	c, err := net.Dial("tcp", dst.String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	bulk(b, c)
}

func BenchmarkTunnelBulk(b *testing.B) {
	c, ep, id, dst := benchTunnel(b)
	s, err := c.Dial(context.Background(), ep, id, dst)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	bulk(b, s)
}

func benchTunnel(b *testing.B) (*tunnel.Client, netip.AddrPort, spiffeid.ID, netip.AddrPort) {
	w := newWorld(b)
	server := w.SVID("shop", "orders")
	ep := endpoint(b, w, server, allowAll)
	return client(b, w, w.SVID("shop", "web")), ep, server.ID, echo(b)
}

func roundTrip(b *testing.B, c net.Conn, msg, buf []byte) {
	if _, err := c.Write(msg); err != nil {
		b.Fatal(err)
	}
	if _, err := io.ReadFull(c, buf); err != nil {
		b.Fatal(err)
	}
}

// bulk sends 1 MiB a loop through the echo server and reads it all back:
// the reader drains until the echo server, seeing the half-close, ends.
func bulk(b *testing.B, c net.Conn) {
	chunk := make([]byte, 1<<20)
	b.SetBytes(int64(len(chunk)))
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, c)
		done <- err
	}()
	for range b.N {
		if _, err := c.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		b.Fatal(err)
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}
