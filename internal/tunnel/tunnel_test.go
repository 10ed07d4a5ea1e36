package tunnel_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"kzero.dev/kzero/internal/ca/svidtest"
	"kzero.dev/kzero/internal/tunnel"
)

var td = spiffeid.RequireTrustDomainFromString("cluster.local")

// world is a CA of the trust domain and the SVIDs it issues.
type world = svidtest.CA

func newWorld(t testing.TB) *world { return svidtest.New(t, td) }

// echo is a destination: a TCP server that answers each connection with
// what it reads, upper-cased per read, and closes when the peer does.
func echo(t testing.TB) netip.AddrPort {
	t.Helper()
	return destination(t, func(c net.Conn) {
		defer c.Close()
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				if _, werr := c.Write(bytes.ToUpper(buf[:n])); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	})
}

// endpoint serves a tunnel endpoint with svid on loopback, deciding with
// authorize; it returns its address.
func endpoint(t testing.TB, w *world, svid *x509svid.SVID, authorize func(context.Context, tunnel.Request) tunnel.Decision) netip.AddrPort {
	t.Helper()
	srv, err := tunnel.NewServer(tunnel.ServerConfig{SVID: svid, Bundle: w.Bundle(), Authorize: authorize})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return netip.MustParseAddrPort(ln.Addr().String())
}

func allowAll(context.Context, tunnel.Request) tunnel.Decision {
	return tunnel.Decision{Allow: true, Reason: "test"}
}

func client(t testing.TB, w *world, svid *x509svid.SVID) *tunnel.Client {
	t.Helper()
	c, err := tunnel.NewClient(tunnel.ClientConfig{SVID: svid, Bundle: w.Bundle()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdle)
	return c
}

func TestStreamCarriesBytesBothWaysAndHalfCloses(t *testing.T) {
	w := newWorld(t)
	server := w.SVID("shop", "orders")
	var seen atomic.Value
	ep := endpoint(t, w, server, func(_ context.Context, r tunnel.Request) tunnel.Decision {
		seen.Store(r)
		return tunnel.Decision{Allow: true}
	})
	dst := echo(t)
	c := client(t, w, w.SVID("shop", "web"))
	conn, err := c.Dial(t.Context(), ep, server.ID, dst)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msg := strings.Repeat("hello through the tunnel ", 10000) // 250 KB: many frames
	go func() {
		_, _ = io.WriteString(conn, msg)
		_ = conn.(interface{ CloseWrite() error }).CloseWrite()
	}()
	got, err := io.ReadAll(conn)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != strings.ToUpper(msg) {
		t.Errorf("read %d bytes back, want %d upper-cased", len(got), len(msg))
	}
	r, _ := seen.Load().(tunnel.Request)
	if r.Source.String() != "spiffe://cluster.local/ns/shop/sa/web" || r.Destination != dst {
		t.Errorf("the endpoint was asked %+v, want the client's ID and %s", r, dst)
	}
}

func TestRefusalCarriesTheReason(t *testing.T) {
	w := newWorld(t)
	server := w.SVID("shop", "orders")
	ep := endpoint(t, w, server, func(_ context.Context, r tunnel.Request) tunnel.Decision {
		return tunnel.Decision{Reason: "policy shop/orders-ingress: no rule allows " + r.Source.String() + "\n(denied)"}
	})
	c := client(t, w, w.SVID("shop", "web"))
	_, err := c.Dial(t.Context(), ep, server.ID, echo(t))
	var refused *tunnel.RefusedError
	if !errors.As(err, &refused) || !tunnel.IsRefused(err) {
		t.Fatalf("Dial: %v, want a 403 RefusedError", err)
	}
	if want := "policy shop/orders-ingress: no rule allows spiffe://cluster.local/ns/shop/sa/web?(denied)"; refused.Reason != want {
		t.Errorf("reason %q, want %q", refused.Reason, want)
	}
}

func TestTheEndpointMustProveTheExpectedID(t *testing.T) {
	w := newWorld(t)
	impostor := w.SVID("shop", "impostor")
	ep := endpoint(t, w, impostor, allowAll)
	c := client(t, w, w.SVID("shop", "web"))
	_, err := c.Dial(t.Context(), ep, spiffeid.RequireFromSegments(td, "ns", "shop", "sa", "orders"), echo(t))
	if err == nil || !strings.Contains(err.Error(), "unexpected ID") {
		t.Fatalf("Dial to an endpoint of another identity: %v, want the handshake refused for its ID", err)
	}
}

func TestAPeerOutsideTheBundleIsRefused(t *testing.T) {
	w := newWorld(t)
	server := w.SVID("shop", "orders")
	var asked atomic.Int32
	ep := endpoint(t, w, server, func(context.Context, tunnel.Request) tunnel.Decision {
		asked.Add(1)
		return tunnel.Decision{Allow: true}
	})
	// Another CA of the same trust domain: its SVID is well formed, and
	// not one of this bundle's.
	other := newWorld(t)
	c, err := tunnel.NewClient(tunnel.ClientConfig{SVID: other.SVID("shop", "web"), Bundle: w.Bundle()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdle()
	if _, err := c.Dial(t.Context(), ep, server.ID, echo(t)); err == nil {
		t.Fatal("an SVID of another CA opened a stream")
	}
	if asked.Load() != 0 {
		t.Error("the endpoint asked its Authorizer about a peer whose SVID did not verify")
	}
}

func TestPlainTextAndOtherMethodsAreRefused(t *testing.T) {
	w := newWorld(t)
	ep := endpoint(t, w, w.SVID("shop", "orders"), allowAll)
	// Plain text on the TLS port: the handshake fails, nothing is relayed.
	conn, err := net.Dial("tcp", ep.String())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, _ := io.ReadAll(conn)
	_ = conn.Close()
	if bytes.Contains(b, []byte("200")) {
		t.Errorf("plain HTTP to the endpoint got %q", b)
	}
	// A verified peer that sends a GET instead of a CONNECT.
	web := w.SVID("shop", "web")
	tc := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{{Certificate: raw(web.Certificates), PrivateKey: web.PrivateKey}},
		RootCAs:      pool(w.Bundle()),
		ServerName:   "ignored",
		// The endpoint's SVID has no DNS name: verify the chain only.
		InsecureSkipVerify: true, //nolint:gosec // the test checks the endpoint's answer, not its identity
	}
	protocols := new(http.Protocols)
	protocols.SetHTTP2(true)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tc, Protocols: protocols}, Timeout: 5 * time.Second}
	resp, err := hc.Get("https://" + ep.String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET on the endpoint: %d, want 405", resp.StatusCode)
	}
}

func TestABadAuthorityIsRefused(t *testing.T) {
	w := newWorld(t)
	server := w.SVID("shop", "orders")
	ep := endpoint(t, w, server, allowAll)
	c := client(t, w, w.SVID("shop", "web"))
	_, err := c.Dial(t.Context(), ep, server.ID, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 0))
	var refused *tunnel.RefusedError
	if !errors.As(err, &refused) || refused.Status != http.StatusBadRequest {
		t.Fatalf("Dial to port 0: %v, want 400", err)
	}
	// A destination nobody listens on: 502, with the reason.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := netip.MustParseAddrPort(ln.Addr().String())
	_ = ln.Close()
	_, err = c.Dial(t.Context(), ep, server.ID, closed)
	if !errors.As(err, &refused) || refused.Status != http.StatusBadGateway || !strings.Contains(refused.Reason, "cannot be reached") {
		t.Fatalf("Dial to a closed port: %v, want 502 saying it cannot be reached", err)
	}
}

func TestStreamsShareOneConnection(t *testing.T) {
	w := newWorld(t)
	server := w.SVID("shop", "orders")
	ep, handshakes := countingEndpoint(t, w, server)
	dst := echo(t)
	c := client(t, w, w.SVID("shop", "web"))
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			conn, err := c.Dial(t.Context(), ep, server.ID, dst)
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			msg := strings.Repeat("x", 100+i)
			if _, err := io.WriteString(conn, msg); err != nil {
				t.Error(err)
				return
			}
			buf := make([]byte, len(msg))
			if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != strings.ToUpper(msg) {
				t.Errorf("stream %d: %q, %v", i, buf, err)
			}
		})
	}
	wg.Wait()
	if n := handshakes.Load(); n > 2 {
		t.Errorf("50 streams between one pair of identities took %d connections, want them pooled on one", n)
	}
}

// countingEndpoint is endpoint, letting everyone through, that counts the
// connections made to it.
func countingEndpoint(t *testing.T, w *world, svid x509svid.Source) (netip.AddrPort, *atomic.Int32) {
	t.Helper()
	srv, err := tunnel.NewServer(tunnel.ServerConfig{SVID: svid, Bundle: w.Bundle(), Authorize: allowAll})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	handshakes := new(atomic.Int32)
	go func() { _ = srv.Serve(countingListener{ln, handshakes}) }()
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	return netip.MustParseAddrPort(ln.Addr().String()), handshakes
}

type countingListener struct {
	net.Listener
	n *atomic.Int32
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

func TestDialHonoursItsContextOnlyWhileOpening(t *testing.T) {
	w := newWorld(t)
	server := w.SVID("shop", "orders")
	ep := endpoint(t, w, server, allowAll)
	c := client(t, w, w.SVID("shop", "web"))
	ctx, cancel := context.WithCancel(t.Context())
	conn, err := c.Dial(ctx, ep, server.ID, echo(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cancel() // the stream outlives the context that opened it
	if _, err := io.WriteString(conn, "still here"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "STILL HERE" {
		t.Fatalf("after the opening context ended: %q, %v", buf, err)
	}
	done, stop := context.WithCancel(t.Context())
	stop()
	if _, err := c.Dial(done, ep, server.ID, echo(t)); err == nil {
		t.Error("Dial with a context already done opened a stream")
	}
}

func TestConfigIsChecked(t *testing.T) {
	w := newWorld(t)
	s := w.SVID("shop", "orders")
	if _, err := tunnel.NewServer(tunnel.ServerConfig{SVID: s, Bundle: w.Bundle()}); err == nil || !strings.Contains(err.Error(), "Authorize") {
		t.Errorf("a server without Authorize: %v", err)
	}
	if _, err := tunnel.NewClient(tunnel.ClientConfig{SVID: s}); err == nil {
		t.Error("a client without a bundle was made")
	}
	c := client(t, w, s)
	if _, err := c.Dial(t.Context(), netip.MustParseAddrPort("127.0.0.1:1"), spiffeid.ID{}, netip.MustParseAddrPort("127.0.0.1:2")); err == nil {
		t.Error("Dial without the endpoint's ID was allowed")
	}
}

func raw(certs []*x509.Certificate) [][]byte {
	out := make([][]byte, len(certs))
	for i, c := range certs {
		out[i] = c.Raw
	}
	return out
}

func pool(b *x509bundle.Bundle) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range b.X509Authorities() {
		p.AddCert(c)
	}
	return p
}
