package tunnel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// ClientConfig is what a Client needs.
type ClientConfig struct {
	// SVID is the source workload's X.509-SVID, which the client presents.
	SVID x509svid.Source
	// Bundle verifies the endpoints' SVIDs.
	Bundle x509bundle.Source
	// DialTimeout bounds the TCP connection to an endpoint; 0: 5 s.
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

	mu    sync.Mutex
	pools map[spiffeid.ID]*http.Transport
	// opened holds, for each endpoint and identity, a channel closed once
	// a first stream has opened there: the streams that come meanwhile
	// wait for it, and so share its connection instead of each making
	// one.
	opened map[poolKey]chan struct{}
	// connected holds the endpoints and identities a stream has opened
	// to: their connection is pooled, and streams to them wait for no
	// gate. A connection lost since is made again by the first stream
	// that needs it.
	connected map[poolKey]bool
}

type poolKey struct {
	peer     spiffeid.ID
	endpoint netip.AddrPort
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
	return &Client{cfg: cfg, pools: map[spiffeid.ID]*http.Transport{}, opened: map[poolKey]chan struct{}{}, connected: map[poolKey]bool{}}, nil
}

// pool is the transport for streams to endpoints that prove peer: one per
// pair of identities, holding a connection per endpoint address.
func (c *Client) pool(peer spiffeid.ID) *http.Transport {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t, ok := c.pools[peer]; ok {
		return t
	}
	tc := tlsconfig.MTLSClientConfig(c.cfg.SVID, c.cfg.Bundle, tlsconfig.AuthorizeID(peer))
	tc.MinVersion = tls.VersionTLS13
	protocols := new(http.Protocols)
	protocols.SetHTTP2(true)
	t := &http.Transport{
		DialContext:         c.cfg.Dial,
		TLSClientConfig:     tc,
		TLSHandshakeTimeout: c.cfg.DialTimeout,
		Protocols:           protocols,
		IdleConnTimeout:     c.cfg.IdleTimeout,
		HTTP2: &http.HTTP2Config{
			MaxReceiveBufferPerStream:     streamWindow,
			MaxReceiveBufferPerConnection: connectionWindow,
			PingTimeout:                   15 * time.Second,
			SendPingTimeout:               30 * time.Second,
		},
	}
	c.pools[peer] = t
	return t
}

// Dial opens a stream to dst through the tunnel endpoint at endpoint (the
// destination pod's address and Port), which must prove the SPIFFE ID peer.
// ctx bounds the opening only; the stream lasts until it is closed. A
// refusal of the endpoint is a *RefusedError.
func (c *Client) Dial(ctx context.Context, endpoint netip.AddrPort, peer spiffeid.ID, dst netip.AddrPort) (net.Conn, error) {
	if peer.IsZero() {
		return nil, errors.New("tunnel: Dial needs the SPIFFE ID the endpoint must prove")
	}
	// The stream's life is its own: ctx only bounds its opening.
	streamCtx, cancel := context.WithCancel(context.Background())
	stop := context.AfterFunc(ctx, cancel)
	pr, pw := io.Pipe()
	req, err := http.NewRequestWithContext(streamCtx, http.MethodConnect, "https://"+endpoint.String(), pr) //nolint:contextcheck // the stream outlives ctx, which AfterFunc ties to its opening
	if err != nil {
		stop()
		cancel()
		return nil, fmt.Errorf("tunnel: %w", err)
	}
	req.Host = dst.String() // the CONNECT's authority: where the stream goes
	first, wait := c.gate(poolKey{peer, endpoint})
	if !first && wait != nil {
		select {
		case <-wait:
		case <-ctx.Done():
		}
	}
	resp, err := c.pool(peer).RoundTrip(req)
	if first {
		c.firstDone(poolKey{peer, endpoint}, wait, err == nil)
	}
	if !stop() {
		err = errors.Join(err, ctx.Err())
	}
	if err != nil {
		cancel()
		_ = pw.Close()
		if resp != nil {
			_ = resp.Body.Close()
		}
		return nil, fmt.Errorf("tunnel: open a stream to %s through %s (%s): %w", dst, endpoint, peer, err)
	}
	if resp.StatusCode != http.StatusOK {
		reason := resp.Header.Get(ReasonHeader)
		_ = resp.Body.Close()
		_ = pw.Close()
		cancel()
		return nil, &RefusedError{Status: resp.StatusCode, Reason: reason}
	}
	return &stream{body: resp.Body, w: pw, cancel: cancel, local: endpoint, remote: dst}, nil
}

// gate says whether this is the first stream to key, and returns the
// channel closed once the first has opened (or failed); none, when a
// stream has opened to key before.
func (c *Client) gate(key poolKey) (bool, chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.connected[key] {
		return false, nil
	}
	if ch, ok := c.opened[key]; ok {
		return false, ch
	}
	ch := make(chan struct{})
	c.opened[key] = ch
	return true, ch
}

// firstDone ends the first stream's wait. The gate goes with it: the
// streams after it find the connection in the pool (or, after a failure,
// the next one is a first again), and the map stays as small as the
// number of endpoints being opened at the moment.
func (c *Client) firstDone(key poolKey, ch chan struct{}, opened bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.opened[key] == ch {
		delete(c.opened, key)
	}
	if opened {
		c.connected[key] = true
	}
	close(ch)
}

// CloseIdle closes the pooled connections that carry no stream.
func (c *Client) CloseIdle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, t := range c.pools {
		t.CloseIdleConnections()
	}
}

// stream is one CONNECT stream as a net.Conn. CloseWrite ends the
// client's half (the destination reads EOF); Close ends both.
type stream struct {
	body   io.ReadCloser
	w      *io.PipeWriter
	cancel context.CancelFunc
	once   sync.Once

	local, remote netip.AddrPort
}

func (s *stream) Read(p []byte) (int, error) {
	n, err := s.body.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		err = fmt.Errorf("tunnel: %w", err)
	}
	return n, err
}

func (s *stream) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	if errors.Is(err, io.ErrClosedPipe) {
		err = net.ErrClosed
	}
	return n, err
}

// CloseWrite ends what the client sends.
func (s *stream) CloseWrite() error { return s.w.Close() }

func (s *stream) Close() error {
	s.once.Do(func() {
		_ = s.w.Close()
		_ = s.body.Close()
		s.cancel()
	})
	return nil
}

// LocalAddr is the tunnel endpoint's address; RemoteAddr the destination.
func (s *stream) LocalAddr() net.Addr  { return net.TCPAddrFromAddrPort(s.local) }
func (s *stream) RemoteAddr() net.Addr { return net.TCPAddrFromAddrPort(s.remote) }

// Deadlines are not kept on a stream: whoever carries it bounds its life.
func (s *stream) SetDeadline(time.Time) error      { return errNoDeadline }
func (s *stream) SetReadDeadline(time.Time) error  { return errNoDeadline }
func (s *stream) SetWriteDeadline(time.Time) error { return errNoDeadline }

var errNoDeadline = fmt.Errorf("tunnel: a stream keeps no deadline: %w", os.ErrNoDeadline)
