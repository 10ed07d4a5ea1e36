package tunnel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// ClientConfig is what a Client needs.
type ClientConfig struct {
	// SVID is the source workload's X.509-SVID, which the client presents.
	SVID x509svid.Source
	// Bundle verifies the endpoints' SVIDs.
	Bundle x509bundle.Source
	// DialTimeout bounds the TCP connection to an endpoint and its TLS
	// handshake; 0: 5 s.
	DialTimeout time.Duration
	// IdleTimeout closes a pooled connection unused that long; 0: 90 s.
	IdleTimeout time.Duration
	// Dial makes the TCP connection to an endpoint; nil: a net.Dialer with
	// DialTimeout. The agent dials from inside the source pod's network
	// namespace, so that the connection leaves from the pod's address.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Client opens streams as one source identity. It is safe for concurrent
// use.
type Client struct {
	cfg ClientConfig

	mu sync.Mutex
	// conns are the pooled connections to each endpoint and identity;
	// dialing the ones being made, which the streams that come
	// meanwhile wait for, so that they share it instead of each making
	// one.
	conns   map[poolKey][]*h2conn
	dialing map[poolKey]*dialCall
	tls     map[spiffeid.ID]*tls.Config
}

type poolKey struct {
	peer     spiffeid.ID
	endpoint netip.AddrPort
}

type dialCall struct {
	done chan struct{}
	err  error
}

// NewClient checks cfg and returns a Client.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.SVID == nil || cfg.Bundle == nil {
		return nil, errors.New("tunnel: a client needs the source's SVID and the trust bundle")
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 90 * time.Second
	}
	if cfg.Dial == nil {
		cfg.Dial = (&net.Dialer{Timeout: cfg.DialTimeout}).DialContext
	}
	return &Client{cfg: cfg, conns: map[poolKey][]*h2conn{}, dialing: map[poolKey]*dialCall{}, tls: map[spiffeid.ID]*tls.Config{}}, nil
}

// Dial opens a stream to dst through the tunnel endpoint at endpoint (the
// destination pod's address and Port), which must prove the SPIFFE ID peer.
// ctx bounds the opening only; the stream lasts until it is closed. A
// refusal of the endpoint is a *RefusedError.
func (c *Client) Dial(ctx context.Context, endpoint netip.AddrPort, peer spiffeid.ID, dst netip.AddrPort) (net.Conn, error) {
	if peer.IsZero() {
		return nil, errors.New("tunnel: Dial needs the SPIFFE ID the endpoint must prove")
	}
	key := poolKey{peer, endpoint}
	for refused := 0; ; {
		conn, err := c.conn(ctx, key)
		if err != nil {
			return nil, fmt.Errorf("tunnel: open a stream to %s through %s (%s): %w", dst, endpoint, peer, err)
		}
		s, err := openStream(ctx, conn, dst)
		if errors.Is(err, errConnFull) {
			continue // the connection went away, or filled: another
		}
		if errors.Is(err, errRefusedStream) && refused < 3 {
			// The endpoint took no action on it (it was going away, or
			// full): safe to ask again, on whichever connection serves.
			refused++
			continue
		}
		if err != nil {
			var r *RefusedError
			if errors.As(err, &r) {
				return nil, err
			}
			return nil, fmt.Errorf("tunnel: open a stream to %s through %s (%s): %w", dst, endpoint, peer, err)
		}
		return s, nil
	}
}

// errConnFull says a pooled connection took no new stream.
var errConnFull = errors.New("tunnel: the connection takes no more streams")

// conn is a pooled connection to key with room for a stream, or a new one.
func (c *Client) conn(ctx context.Context, key poolKey) (*h2conn, error) {
	for {
		c.mu.Lock()
		for _, hc := range c.conns[key] {
			if hc.canOpen() {
				c.mu.Unlock()
				return hc, nil
			}
		}
		if d := c.dialing[key]; d != nil {
			c.mu.Unlock()
			select {
			case <-d.done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			if d.err != nil {
				return nil, d.err
			}
			continue
		}
		d := &dialCall{done: make(chan struct{})}
		c.dialing[key] = d
		tc := c.tlsConfigLocked(key.peer)
		c.mu.Unlock()
		hc, err := c.connect(ctx, key, tc)
		c.mu.Lock()
		delete(c.dialing, key)
		if err == nil {
			c.conns[key] = append(c.conns[key], hc)
		}
		d.err = err
		close(d.done)
		c.mu.Unlock()
		if err != nil {
			return nil, err
		}
	}
}

// tlsConfigLocked is the TLS configuration for endpoints that prove peer.
func (c *Client) tlsConfigLocked(peer spiffeid.ID) *tls.Config {
	if tc, ok := c.tls[peer]; ok {
		return tc
	}
	tc := tlsconfig.MTLSClientConfig(c.cfg.SVID, c.cfg.Bundle, tlsconfig.AuthorizeID(peer))
	tc.MinVersion = tls.VersionTLS13
	tc.NextProtos = []string{http2.NextProtoTLS}
	c.tls[peer] = tc
	return tc
}

// connect makes a connection to key: TCP, mutual TLS, HTTP/2's preface
// and SETTINGS.
func (c *Client) connect(ctx context.Context, key poolKey, tc *tls.Config) (*h2conn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()
	raw, err := c.cfg.Dial(ctx, "tcp", key.endpoint.String())
	if err != nil {
		return nil, err
	}
	tconn := tls.Client(raw, tc)
	if err := tconn.HandshakeContext(ctx); err != nil {
		_ = raw.Close()
		return nil, err
	}
	if p := tconn.ConnectionState().NegotiatedProtocol; p != http2.NextProtoTLS {
		_ = tconn.Close()
		return nil, fmt.Errorf("the endpoint speaks %q, not HTTP/2", p)
	}
	hc := newH2conn(tconn, false, c.cfg.IdleTimeout)
	hc.onClose = func(hc *h2conn) { c.forget(key, hc) }
	hc.expireAt(expiryOf(tconn.ConnectionState(), c.cfg.SVID))
	if err := hc.start(); err != nil {
		hc.close(err)
		return nil, err
	}
	return hc, nil
}

// forget takes a connection that has ended out of the pool.
func (c *Client) forget(key poolKey, hc *h2conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	conns := c.conns[key]
	for i, x := range conns {
		if x == hc {
			conns = append(conns[:i], conns[i+1:]...)
			break
		}
	}
	if len(conns) == 0 {
		delete(c.conns, key)
		return
	}
	c.conns[key] = conns
}

// CloseIdle closes the pooled connections that carry no stream.
func (c *Client) CloseIdle() {
	c.mu.Lock()
	var idle []*h2conn
	for _, conns := range c.conns {
		for _, hc := range conns {
			hc.mu.Lock()
			if hc.active == 0 {
				idle = append(idle, hc)
			}
			hc.mu.Unlock()
		}
	}
	c.mu.Unlock()
	for _, hc := range idle {
		hc.closeIfIdle()
	}
}

// canOpen says whether the connection takes another stream.
func (c *h2conn) canOpen() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err == nil && !c.goAway && c.active < c.peerStreams && c.nextID < 1<<31-1
}

// openStream sends a CONNECT to dst on c and waits for its answer.
func openStream(ctx context.Context, c *h2conn, dst netip.AddrPort) (*stream, error) {
	// The stream's number is taken under wmu, so that streams are opened
	// in the order of their numbers, as HTTP/2 requires.
	c.wmu.Lock()
	c.mu.Lock()
	if c.err != nil || c.goAway || c.active >= c.peerStreams || c.nextID >= 1<<31-1 {
		c.mu.Unlock()
		c.wmu.Unlock()
		return nil, errConnFull
	}
	s := c.addStreamLocked(c.nextID)
	c.nextID += 2
	s.response = make(chan *http2.MetaHeadersFrame, 1)
	c.mu.Unlock()
	block := c.encodeHeaders(
		hpack.HeaderField{Name: ":method", Value: http.MethodConnect},
		hpack.HeaderField{Name: ":authority", Value: dst.String()},
	)
	err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: s.id, BlockFragment: block, EndHeaders: true})
	if err == nil {
		err = c.bw.Flush()
	}
	c.wmu.Unlock()
	if err != nil {
		err = fmt.Errorf("%w: write: %w", errConnClosed, err)
		c.close(err)
		return nil, err
	}
	var resp *http2.MetaHeadersFrame
	select {
	case resp = <-s.response:
	case <-s.ended:
		select {
		case resp = <-s.response: // a refusal, then the stream's end
		default:
			return nil, s.failure()
		}
	case <-ctx.Done():
		s.abort(ctx.Err(), true)
		return nil, ctx.Err()
	}
	status, err := strconv.Atoi(resp.PseudoValue("status"))
	if err != nil {
		s.abort(err, true)
		return nil, fmt.Errorf("the endpoint answered with a bad status %q", resp.PseudoValue("status"))
	}
	if status != http.StatusOK {
		s.abort(errStreamEnded, true)
		return nil, &RefusedError{Status: status, Reason: cleanReason(header(resp, reasonField))}
	}
	return s, nil
}
