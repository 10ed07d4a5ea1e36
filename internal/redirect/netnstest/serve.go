package netnstest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"kzero.dev/kzero/internal/redirect"
)

// CallTimeout bounds a Call.
const CallTimeout = 5 * time.Second

// Upper serves, in netns on port, each connection with what it reads
// upper-cased, until the peer half-closes; it stops when the test ends.
func Upper(t testing.TB, netns string, port uint16) {
	t.Helper()
	ln, err := redirect.ListenIn(netns, fmt.Sprintf("0.0.0.0:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close() //nolint:errcheck // answered
				b, _ := io.ReadAll(c)
				_, _ = c.Write(bytes.ToUpper(b))
			}()
		}
	}()
}

// Call connects from netns to dst (with mark, as the agent's own sockets
// are, it is not captured), sends msg, half-closes and returns the answer.
// A reset can end it while it connects as well as after.
func Call(t testing.TB, netns string, dst netip.AddrPort, mark uint32, msg string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), CallTimeout)
	defer cancel()
	c, err := redirect.DialIn(ctx, netns, dst, mark)
	if err != nil {
		return "", err
	}
	return Exchange(c, msg)
}

// Exchange sends msg on c, half-closes it, returns the answer and closes
// c.
func Exchange(c net.Conn, msg string) (string, error) {
	defer c.Close() //nolint:errcheck // read
	_ = c.SetDeadline(time.Now().Add(CallTimeout))
	if _, err := io.WriteString(c, msg); err != nil {
		return "", err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	b, err := io.ReadAll(c)
	return string(b), err
}
