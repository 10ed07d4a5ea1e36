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
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
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
	// Log receives what goes wrong outside a stream's answer; nil: none.
	Log *slog.Logger
}

// Server is a tunnel endpoint: it accepts HBONE streams on a listener.
type Server struct {
	cfg ServerConfig
	srv *http.Server
}

// Buffers and limits of both sides. A connection carries many streams, and
// a stream's window is its share of the connection's, so one bulk stream
// gets the bandwidth a large window allows over the round trip.
const (
	streamWindow     = 4 << 20
	connectionWindow = 16 << 20
	maxStreams       = 1000
)

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
	s := &Server{cfg: cfg}
	if s.cfg.Dial == nil {
		d := &net.Dialer{Timeout: cfg.DialTimeout}
		s.cfg.Dial = func(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", dst.String())
		}
	}
	// Any peer whose SVID verifies against the bundle completes the
	// handshake; whether it may reach the destination is Authorize's.
	tc := tlsconfig.MTLSServerConfig(cfg.SVID, cfg.Bundle, tlsconfig.AuthorizeAny())
	tc.MinVersion = tls.VersionTLS13
	tc.NextProtos = []string{"h2"}
	protocols := new(http.Protocols)
	protocols.SetHTTP2(true)
	s.srv = &http.Server{
		Handler:           s,
		TLSConfig:         tc,
		Protocols:         protocols,
		ReadHeaderTimeout: 10 * time.Second, // and the TLS handshake's
		IdleTimeout:       10 * time.Minute,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams:          maxStreams,
			MaxReceiveBufferPerStream:     streamWindow,
			MaxReceiveBufferPerConnection: connectionWindow,
			PingTimeout:                   15 * time.Second,
			SendPingTimeout:               30 * time.Second,
		},
		ErrorLog: slog.NewLogLogger(cfg.Log.Handler(), slog.LevelDebug),
	}
	return s, nil
}

// Serve accepts connections on ln until Shutdown; it returns nil then.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.srv.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("tunnel: serve: %w", err)
	}
	return nil
}

// Shutdown stops accepting, and waits until the streams under way end or
// ctx does; then it closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
	}
	return err
}

// ServeHTTP answers one CONNECT.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodConnect {
		refuse(w, http.StatusMethodNotAllowed, "a tunnel endpoint answers CONNECT only")
		return
	}
	src, err := peerID(r.TLS)
	if err != nil {
		refuse(w, http.StatusUnauthorized, err.Error())
		return
	}
	dst, err := netip.ParseAddrPort(r.Host)
	if err != nil || !dst.Addr().IsValid() || dst.Port() == 0 {
		refuse(w, http.StatusBadRequest, fmt.Sprintf("the CONNECT's authority %q is not an ip:port", cleanReason(r.Host)))
		return
	}
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	d := s.cfg.Authorize(r.Context(), Request{Source: src, Destination: dst})
	if !d.Allow {
		refuse(w, http.StatusForbidden, d.Reason)
		return
	}
	conn, err := s.cfg.Dial(r.Context(), dst)
	if err != nil {
		refuse(w, http.StatusBadGateway, fmt.Sprintf("%s cannot be reached: %v", dst, err))
		return
	}
	defer func() { _ = conn.Close() }()
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	if err := rc.Flush(); err != nil {
		return
	}
	splice(conn, r.Body, w, rc)
}

// splice carries a stream's bytes both ways until both directions have
// ended: the peer's half-close becomes the destination's, and the
// destination's end ends the stream. Each write to the stream is flushed,
// so that an interactive protocol is not held in a buffer.
func splice(conn net.Conn, body io.Reader, w io.Writer, rc *http.ResponseController) {
	var wg sync.WaitGroup
	wg.Go(func() { copyHalf(conn, body) })
	// conn's Read and Close only: its WriteTo would copy through a buffer
	// of its own.
	copyHalf(flushWriter{w, rc}, struct {
		io.Reader
		io.Closer
	}{conn, conn})
	wg.Wait()
}

// flushWriter writes to a stream's response and flushes it at once.
type flushWriter struct {
	w  io.Writer
	rc *http.ResponseController
}

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err == nil {
		err = f.rc.Flush()
	}
	return n, err
}

func refuse(w http.ResponseWriter, status int, reason string) {
	reason = cleanReason(reason)
	w.Header().Set(ReasonHeader, reason)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, reason+"\n")
}

// peerID is the SPIFFE ID of the verified peer certificate.
func peerID(cs *tls.ConnectionState) (spiffeid.ID, error) {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return spiffeid.ID{}, errors.New("the peer presented no X.509-SVID")
	}
	id, err := x509svid.IDFromCert(cs.PeerCertificates[0])
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("the peer's certificate is not an X.509-SVID: %w", err)
	}
	return id, nil
}
