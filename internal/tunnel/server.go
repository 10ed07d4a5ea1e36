package tunnel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
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

// ServerConfig is what a Server needs.
type ServerConfig struct {
	// SVID is the endpoint's own X.509-SVID (the destination workload's).
	SVID x509svid.Source
	// Bundle verifies peers' SVIDs.
	Bundle x509bundle.Source
	// Authorize decides each stream, after the peer's SVID has verified.
	// It must be safe for concurrent use.
	Authorize func(ctx context.Context, req Request) Decision
	// Dial connects an allowed stream to its destination; nil: TCP, with
	// DialTimeout.
	Dial func(ctx context.Context, dst netip.AddrPort) (net.Conn, error)
	// DialTimeout bounds the default Dial; 0: 5 s.
	DialTimeout time.Duration
	// Carried, if set, is told of each stream Dial connected, once it
	// has ended: the bytes delivered to the destination and sent back
	// from it. It must be safe for concurrent use.
	Carried func(req Request, toDestination, fromDestination int64)
	// Log receives what goes wrong outside a stream's answer; nil: none.
	Log *slog.Logger
}

// Server is a tunnel endpoint: it accepts HBONE streams on a listener.
type Server struct {
	cfg ServerConfig
	tls *tls.Config

	mu     sync.Mutex
	lns    map[net.Listener]struct{}
	conns  map[*h2conn]struct{}
	closed bool
}

// handshakeTimeout bounds a connection's TLS handshake and HTTP/2 preface.
const handshakeTimeout = 10 * time.Second

// serverIdle closes a connection that has carried no stream that long.
const serverIdle = 10 * time.Minute

// NewServer checks cfg and returns a Server; Serve starts it.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.SVID == nil || cfg.Bundle == nil {
		return nil, errors.New("tunnel: a server needs its SVID and the trust bundle")
	}
	if cfg.Authorize == nil {
		return nil, errors.New("tunnel: a server needs an Authorize function: without one it would let every peer through")
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Dial == nil {
		d := &net.Dialer{Timeout: cfg.DialTimeout}
		cfg.Dial = func(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", dst.String())
		}
	}
	// Any peer whose SVID verifies against the bundle completes the
	// handshake; whether it may reach the destination is Authorize's.
	tc := tlsconfig.MTLSServerConfig(cfg.SVID, cfg.Bundle, tlsconfig.AuthorizeAny())
	tc.MinVersion = tls.VersionTLS13
	tc.NextProtos = []string{http2.NextProtoTLS}
	return &Server{cfg: cfg, tls: tc, lns: map[net.Listener]struct{}{}, conns: map[*h2conn]struct{}{}}, nil
}

// Serve accepts connections on ln until Shutdown; it returns nil then.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.lns[ln] = struct{}{}
	s.mu.Unlock()
	for {
		raw, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			delete(s.lns, ln)
			s.mu.Unlock()
			if closed {
				return nil
			}
			return fmt.Errorf("tunnel: serve: %w", err)
		}
		go s.serveConn(raw)
	}
}

// serveConn completes a connection's TLS handshake and HTTP/2 preface, and
// then serves its streams.
func (s *Server) serveConn(raw net.Conn) {
	_ = raw.SetDeadline(time.Now().Add(handshakeTimeout))
	tconn := tls.Server(raw, s.tls)
	ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
	defer cancel()
	if err := tconn.HandshakeContext(ctx); err != nil {
		s.cfg.Log.Debug("a tunnel connection failed its handshake", "peer", raw.RemoteAddr(), "error", err)
		_ = raw.Close()
		return
	}
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(tconn, preface); err != nil || string(preface) != http2.ClientPreface {
		s.cfg.Log.Debug("a tunnel connection did not start with HTTP/2's preface", "peer", raw.RemoteAddr(), "error", err)
		_ = tconn.Close()
		return
	}
	_ = raw.SetDeadline(time.Time{})
	src, idErr := peerID(tconn.ConnectionState())
	c := newH2conn(tconn, true, serverIdle)
	c.expireAt(expiryOf(tconn.ConnectionState(), s.cfg.SVID))
	c.onStream = func(st *stream, f *http2.MetaHeadersFrame) { s.serveStream(st, f, src, idErr) }
	c.onClose = func(c *h2conn) {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = tconn.Close()
		return
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	if err := c.start(); err != nil {
		c.close(err)
	}
}

// serveStream answers one stream: it checks the request, asks Authorize,
// connects the stream to its destination, and carries it.
func (s *Server) serveStream(st *stream, f *http2.MetaHeadersFrame, src spiffeid.ID, idErr error) {
	if idErr != nil {
		refuse(st, http.StatusUnauthorized, idErr.Error())
		return
	}
	if m := f.PseudoValue("method"); m != http.MethodConnect {
		refuse(st, http.StatusMethodNotAllowed, "a tunnel endpoint answers CONNECT only")
		return
	}
	authority := f.PseudoValue("authority")
	dst, err := netip.ParseAddrPort(authority)
	if err != nil || !dst.Addr().IsValid() || dst.Port() == 0 {
		refuse(st, http.StatusBadRequest, fmt.Sprintf("the CONNECT's authority %q is not an ip:port", cleanReason(authority)))
		return
	}
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	// Deciding and connecting take DialTimeout at most.
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.DialTimeout)
	defer cancel()
	req := Request{Source: src, Destination: dst}
	d := s.cfg.Authorize(ctx, req)
	if !d.Allow {
		refuse(st, http.StatusForbidden, d.Reason)
		return
	}
	conn, err := s.cfg.Dial(ctx, dst)
	if err != nil {
		refuse(st, http.StatusBadGateway, fmt.Sprintf("%s cannot be reached: %v", dst, err))
		return
	}
	if err := respond(st, http.StatusOK, ""); err != nil {
		_ = conn.Close()
		st.abort(err, true)
		if s.cfg.Carried != nil {
			s.cfg.Carried(req, 0, 0)
		}
		return
	}
	cancel()
	fromDst, toDst := st.carry(conn)
	if s.cfg.Carried != nil {
		s.cfg.Carried(req, toDst, fromDst)
	}
}

// respond sends the stream's response HEADERS: status, and the reason if
// any; a status other than 200 ends this side of the stream with the
// reason as its body.
func respond(st *stream, status int, reason string) error {
	c := st.c
	return c.write(func() error {
		fields := []hpack.HeaderField{{Name: ":status", Value: strconv.Itoa(status)}}
		if status != http.StatusOK {
			fields = append(fields,
				hpack.HeaderField{Name: reasonField, Value: reason},
				hpack.HeaderField{Name: "content-type", Value: "text/plain; charset=utf-8"})
		}
		block := c.encodeHeaders(fields...)
		if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: st.id, BlockFragment: block, EndHeaders: true}); err != nil {
			return err
		}
		if status == http.StatusOK {
			return nil
		}
		return c.fr.WriteData(st.id, true, []byte(reason+"\n"))
	})
}

// refuse answers a stream with status and the reason, and ends it.
func refuse(st *stream, status int, reason string) {
	reason = cleanReason(reason)
	c := st.c
	c.mu.Lock()
	done := st.sentEnd
	c.mu.Unlock()
	if done {
		return
	}
	_ = respond(st, status, reason)
	// Whatever the client still sends is of no use: it is told so.
	st.abort(errStreamEnded, true)
}

// Shutdown stops accepting, tells each connection's peer that it takes no
// more streams, and waits until the streams under way end or ctx does;
// then it closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	for ln := range s.lns {
		_ = ln.Close()
	}
	conns := make([]*h2conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.goAwayNow(http2.ErrCodeNo, "the endpoint is shutting down")
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
wait:
	for busy(conns) {
		select {
		case <-tick.C:
		case <-ctx.Done():
			break wait
		}
	}
	for _, c := range conns {
		c.close(fmt.Errorf("%w: the endpoint shut down", errConnClosed))
	}
	return ctx.Err()
}

// busy says whether a connection of conns still carries a stream.
func busy(conns []*h2conn) bool {
	for _, c := range conns {
		c.mu.Lock()
		n := c.active
		if c.err != nil {
			n = 0
		}
		c.mu.Unlock()
		if n > 0 {
			return true
		}
	}
	return false
}

// peerID is the SPIFFE ID of the verified peer certificate.
func peerID(cs tls.ConnectionState) (spiffeid.ID, error) {
	if len(cs.PeerCertificates) == 0 {
		return spiffeid.ID{}, errors.New("the peer presented no X.509-SVID")
	}
	id, err := x509svid.IDFromCert(cs.PeerCertificates[0])
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("the peer's certificate is not an X.509-SVID: %w", err)
	}
	return id, nil
}
