package tunnel

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"golang.org/x/sys/unix"
)

// The tunnel speaks the part of HTTP/2 (RFC 9113) that HBONE uses, over
// golang.org/x/net/http2's Framer and hpack: CONNECT streams, their DATA,
// flow control, RST_STREAM, SETTINGS, PING and GOAWAY. It is its own and
// not net/http's so that a stream's bytes change hands as few times as
// possible: the connection's reader writes each DATA frame straight into
// the stream's TCP connection (a non-blocking write; only what does not
// fit waits in the stream, for a goroutine of its own), and the goroutine
// that reads the TCP connection writes and flushes its DATA frames itself.
// net/http hands each frame through pipes and channels between three
// goroutines, and that was most of the tunnel's CPU time.

// Buffers and limits of both sides. A connection carries many streams, and
// a stream's window is its share of the connection's, so one bulk stream
// gets the bandwidth a large window allows over the round trip.
const (
	streamWindow     = 4 << 20
	connectionWindow = 16 << 20
	maxStreams       = 1000
	// maxHeaderList bounds a HEADERS block, decoded.
	maxHeaderList = 16 << 10
	// pingAfter is how long a connection may be silent before a PING
	// asks whether the peer is there; pingTimeout how long its answer
	// may take before the connection is given up.
	pingAfter   = 30 * time.Second
	pingTimeout = 15 * time.Second
	// initialWindow is HTTP/2's window before SETTINGS say otherwise.
	initialWindow = 65535
	// defaultMaxFrame is HTTP/2's largest frame before SETTINGS say
	// otherwise, and the largest this side reads.
	defaultMaxFrame = 16 << 10
)

var (
	errConnClosed  = errors.New("tunnel: the connection to the tunnel endpoint closed")
	errStreamReset = errors.New("tunnel: the peer reset the stream")
	errStreamEnded = errors.New("tunnel: the stream ended")
	// errRefusedStream is a stream the peer refused before doing
	// anything with it (RST_STREAM REFUSED_STREAM): another connection
	// may take it.
	errRefusedStream = errors.New("tunnel: the peer refused the stream before acting on it")
)

// h2conn is one HTTP/2 connection over mutual TLS, as a client or a
// server. Its reader (readLoop) is the only goroutine that reads it;
// writers take wmu for a batch of frames and flush it.
type h2conn struct {
	nc     net.Conn
	server bool
	fr     *http2.Framer

	wmu  sync.Mutex // the frames being written, bw and henc
	bw   *bufio.Writer
	henc *hpack.Encoder
	hbuf bytes.Buffer

	mu      sync.Mutex
	window  sync.Cond // on mu: a send window grew, or the connection ended
	streams map[uint32]*stream
	nextID  uint32 // the client's next stream
	lastID  uint32 // the last stream the peer opened
	active  int    // streams not yet ended both ways
	// sendWindow is what this side may still send on the connection;
	// peerWindow the peer's initial window for each stream; peerFrame
	// its largest frame; peerStreams how many streams it takes at once.
	sendWindow  int64
	peerWindow  int64
	peerFrame   int
	peerStreams int
	// recvWindow is what the peer may still send on the connection;
	// unacked what has been consumed and not yet given back to it.
	recvWindow int64
	unacked    int64
	err        error // why the connection ended; nil while it lasts
	goAway     bool  // no new streams: GOAWAY sent or received
	idle       *time.Timer
	idleAfter  time.Duration
	lastRead   atomic.Int64 // unix nanoseconds of the last frame read
	// controlling counts the control frames waiting to be written.
	controlling atomic.Int32
	pingSent    time.Time // an unanswered PING's, or zero
	health      *time.Timer
	expiry      *time.Timer

	// onStream is the server's: a peer opened a stream.
	onStream func(*stream, *http2.MetaHeadersFrame)
	// handling counts the onStream calls under way, which a stream's
	// reset does not end: a peer that opens and resets streams at once
	// (the "rapid reset" attack) gets no more than maxHandling going.
	handling    int
	maxHandling int
	// onClose runs once when the connection ends.
	onClose func(*h2conn)
	done    chan struct{}
}

func newH2conn(nc net.Conn, server bool, idleAfter time.Duration) *h2conn {
	c := &h2conn{
		nc:          nc,
		server:      server,
		bw:          bufio.NewWriterSize(nc, 64<<10),
		streams:     map[uint32]*stream{},
		nextID:      1,
		sendWindow:  initialWindow,
		peerWindow:  initialWindow,
		peerFrame:   defaultMaxFrame,
		peerStreams: maxStreams,
		recvWindow:  connectionWindow,
		maxHandling: maxStreams,
		idleAfter:   idleAfter,
		done:        make(chan struct{}),
	}
	c.window.L = &c.mu
	c.fr = http2.NewFramer(c.bw, bufio.NewReaderSize(nc, 32<<10))
	c.fr.SetReuseFrames()
	c.fr.SetMaxReadFrameSize(defaultMaxFrame)
	c.fr.MaxHeaderListSize = maxHeaderList
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.henc = hpack.NewEncoder(&c.hbuf)
	c.lastRead.Store(time.Now().UnixNano())
	return c
}

// start sends this side's SETTINGS (after the client's preface), opens the
// connection's window and starts the reader; the peer's preface, for a
// server, has been read.
func (c *h2conn) start() error {
	c.wmu.Lock()
	if !c.server {
		_, _ = c.bw.WriteString(http2.ClientPreface)
	}
	settings := []http2.Setting{
		{ID: http2.SettingInitialWindowSize, Val: streamWindow},
		{ID: http2.SettingMaxHeaderListSize, Val: maxHeaderList},
	}
	if c.server {
		settings = append(settings, http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: maxStreams})
	} else {
		settings = append(settings, http2.Setting{ID: http2.SettingEnablePush, Val: 0})
	}
	err := c.fr.WriteSettings(settings...)
	if err == nil {
		err = c.fr.WriteWindowUpdate(0, connectionWindow-initialWindow)
	}
	if err == nil {
		err = c.bw.Flush()
	}
	c.wmu.Unlock()
	if err != nil {
		return fmt.Errorf("tunnel: send SETTINGS: %w", err)
	}
	c.mu.Lock()
	c.idleTimerLocked()
	c.health = time.AfterFunc(pingAfter, c.checkHealth)
	c.mu.Unlock()
	go c.readLoop()
	return nil
}

// readLoop reads frames until the connection ends.
func (c *h2conn) readLoop() {
	var err error
	for err == nil {
		var f http2.Frame
		f, err = c.fr.ReadFrame()
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				c.resetStream(se.StreamID, se.Code)
				err = nil
			}
			continue
		}
		c.lastRead.Store(time.Now().UnixNano())
		err = c.handle(f)
	}
	var ce http2.ConnectionError
	if errors.As(err, &ce) {
		c.goAwayNow(http2.ErrCode(ce), err.Error())
	}
	c.close(fmt.Errorf("%w: %w", errConnClosed, err))
}

// handle acts on one frame; an error ends the connection.
func (c *h2conn) handle(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.DataFrame:
		return c.onData(f)
	case *http2.MetaHeadersFrame:
		return c.onHeaders(f)
	case *http2.WindowUpdateFrame:
		return c.onWindowUpdate(f)
	case *http2.SettingsFrame:
		return c.onSettings(f)
	case *http2.PingFrame:
		if f.IsAck() {
			c.mu.Lock()
			c.pingSent = time.Time{}
			c.mu.Unlock()
			return nil
		}
		data := f.Data
		c.control(func() error { return c.fr.WritePing(true, data) })
	case *http2.RSTStreamFrame:
		if s := c.stream(f.StreamID); s != nil {
			why := fmt.Errorf("%w: %v", errStreamReset, f.ErrCode)
			if f.ErrCode == http2.ErrCodeRefusedStream {
				why = errRefusedStream
			}
			s.abort(why, false)
		}
	case *http2.GoAwayFrame:
		c.mu.Lock()
		c.goAway = true
		var gone []*stream
		for id, s := range c.streams {
			if !c.server && id > f.LastStreamID {
				gone = append(gone, s)
			}
		}
		c.mu.Unlock()
		for _, s := range gone {
			s.abort(fmt.Errorf("%w: the endpoint is going away (%v)", errConnClosed, f.ErrCode), false)
		}
	case *http2.PushPromiseFrame:
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	// PRIORITY and frames of unknown types are ignored, as RFC 9113 asks.
	return nil
}

func (c *h2conn) onData(f *http2.DataFrame) error {
	n := int64(f.Length)
	c.mu.Lock()
	c.recvWindow -= n
	if c.recvWindow < 0 {
		c.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeFlowControl)
	}
	s := c.streams[f.StreamID]
	opened := c.opened(f.StreamID)
	c.mu.Unlock()
	data := f.Data()
	// Padding is consumed as it arrives; so is what comes for a stream
	// that is gone.
	dropped := n - int64(len(data))
	if s == nil {
		// A stream never opened is the peer's error; one this side has
		// ended may still have frames on the way, which are dropped.
		dropped = n
		if !opened {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
	} else {
		s.deliver(data, f.StreamEnded())
	}
	c.consumed(nil, dropped)
	return nil
}

func (c *h2conn) onHeaders(f *http2.MetaHeadersFrame) error {
	id := f.StreamID
	if s := c.stream(id); s != nil {
		if !c.server && s.response != nil {
			select {
			case s.response <- f:
			default: // a second HEADERS (trailers) only ends the stream
			}
		}
		if f.StreamEnded() {
			s.deliver(nil, true)
		}
		return nil
	}
	c.mu.Lock()
	if c.opened(id) {
		// A stream that has ended here: the answer to a CONNECT given
		// up on, trailers after a reset. Its block has been decoded,
		// which keeps HPACK's table in step.
		c.mu.Unlock()
		return nil
	}
	if !c.server || id%2 == 0 {
		c.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	c.lastID = id
	if c.goAway || c.err != nil || c.active >= maxStreams || c.handling >= c.maxHandling {
		c.mu.Unlock()
		c.resetStream(id, http2.ErrCodeRefusedStream)
		return nil
	}
	s := c.addStreamLocked(id)
	c.handling++
	c.mu.Unlock()
	if f.StreamEnded() {
		s.deliver(nil, true)
	}
	go func() {
		defer func() {
			c.mu.Lock()
			c.handling--
			c.mu.Unlock()
		}()
		c.onStream(s, f)
	}()
	return nil
}

// opened says whether stream id has been opened on the connection, under
// mu: by the peer, for a server; by this side, for a client.
func (c *h2conn) opened(id uint32) bool {
	if c.server {
		return id%2 == 1 && id <= c.lastID
	}
	return id%2 == 1 && id < c.nextID
}

func (c *h2conn) onWindowUpdate(f *http2.WindowUpdateFrame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	inc := int64(f.Increment)
	if f.StreamID == 0 {
		c.sendWindow += inc
		if c.sendWindow > 1<<31-1 {
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
	} else if s := c.streams[f.StreamID]; s != nil {
		s.sendWindow += inc
		if s.sendWindow > 1<<31-1 {
			go c.resetStream(f.StreamID, http2.ErrCodeFlowControl)
		}
	}
	c.window.Broadcast()
	return nil
}

func (c *h2conn) onSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	var table *uint32 // the peer's HPACK table, if it says
	c.mu.Lock()
	err := f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingInitialWindowSize:
			delta := int64(s.Val) - c.peerWindow
			c.peerWindow = int64(s.Val)
			for _, st := range c.streams {
				st.sendWindow += delta
			}
		case http2.SettingMaxFrameSize:
			c.peerFrame = int(s.Val)
		case http2.SettingMaxConcurrentStreams:
			c.peerStreams = int(min(s.Val, maxStreams))
		case http2.SettingHeaderTableSize:
			table = &s.Val
		case http2.SettingEnablePush, http2.SettingMaxHeaderListSize,
			http2.SettingEnableConnectProtocol, http2.SettingNoRFC7540Priorities:
			// Nothing this side sends depends on them: it pushes
			// nothing, and its header blocks are small.
		}
		return nil
	})
	c.window.Broadcast()
	c.mu.Unlock()
	if err != nil {
		return err
	}
	// The encoder keeps to the peer's table before the acknowledgement,
	// as RFC 9113 asks.
	c.control(func() error {
		if table != nil {
			c.henc.SetMaxDynamicTableSizeLimit(*table)
		}
		return c.fr.WriteSettingsAck()
	})
	return nil
}

// maxControl bounds the control frames (WINDOW_UPDATE, PING and SETTINGS
// acknowledgements, RST_STREAM) waiting to be written: a peer that makes
// more wait, by sending PINGs and never reading, is dropped.
const maxControl = 1000

// control writes frames apart from the caller: the reader must never wait
// for a write, or two peers each sending more than the other reads would
// wait for each other for ever.
func (c *h2conn) control(frames func() error) {
	if c.controlling.Add(1) > maxControl {
		c.controlling.Add(-1)
		go c.close(fmt.Errorf("%w: the peer left more than %d control frames unread", errConnClosed, maxControl))
		return
	}
	go func() {
		defer c.controlling.Add(-1)
		_ = c.write(frames)
	}()
}

// write writes frames under wmu and flushes them.
func (c *h2conn) write(frames func() error) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	err := frames()
	if err == nil {
		err = c.bw.Flush()
	}
	if err != nil {
		go c.close(fmt.Errorf("%w: write: %w", errConnClosed, err))
	}
	return err
}

func (c *h2conn) stream(id uint32) *stream {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.streams[id]
}

func (c *h2conn) addStreamLocked(id uint32) *stream {
	s := &stream{c: c, id: id, sendWindow: c.peerWindow, recvWindow: streamWindow, ended: make(chan struct{})}
	s.readable.L = &s.mu
	c.streams[id] = s
	c.active++
	if c.idle != nil {
		c.idle.Stop()
	}
	return s
}

// removeLocked forgets s once it has ended both ways.
func (c *h2conn) removeLocked(s *stream) {
	if c.streams[s.id] != s {
		return
	}
	delete(c.streams, s.id)
	c.active--
	if c.goAway && c.active == 0 && c.err == nil {
		go c.closeIfIdle() // it takes no stream and carries none
		return
	}
	c.idleTimerLocked()
}

// expireAt stops the connection taking streams at t, when the first of
// the two SVIDs its handshake verified expires: a stream never opens on
// an expired identity. The streams under way go on; once they have
// ended, the connection closes, and the next stream makes a new one,
// with a new handshake. Called once, before start.
func (c *h2conn) expireAt(t time.Time) {
	if t.IsZero() {
		return
	}
	c.expiry = time.AfterFunc(time.Until(t), func() {
		c.mu.Lock()
		if c.err != nil || c.goAway {
			c.mu.Unlock()
			return
		}
		idle := c.active == 0
		c.goAway = true
		last := c.lastID
		c.mu.Unlock()
		if idle {
			c.closeIfIdle()
			return
		}
		if c.server {
			c.control(func() error { return c.fr.WriteGoAway(last, http2.ErrCodeNo, []byte("a certificate expired")) })
		}
	})
}

// idleTimerLocked closes the connection after idleAfter without a stream.
func (c *h2conn) idleTimerLocked() {
	if c.active > 0 || c.idleAfter <= 0 || c.err != nil {
		return
	}
	if c.idle == nil {
		c.idle = time.AfterFunc(c.idleAfter, c.closeIfIdle)
		return
	}
	c.idle.Reset(c.idleAfter)
}

// closeIfIdle closes the connection if it carries no stream; none can
// open on it after.
func (c *h2conn) closeIfIdle() {
	c.mu.Lock()
	idle := c.active == 0 && c.err == nil
	if idle {
		c.goAway = true
	}
	last := c.lastID
	c.mu.Unlock()
	if idle {
		// The connection ends either way: its GOAWAY waits for no one.
		_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
		_ = c.write(func() error { return c.fr.WriteGoAway(last, http2.ErrCodeNo, []byte("idle")) })
		c.close(fmt.Errorf("%w: idle", errConnClosed))
	}
}

// checkHealth asks a silent peer whether it is there, and gives up on one
// that does not answer.
func (c *h2conn) checkHealth() {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	silent := time.Since(time.Unix(0, c.lastRead.Load()))
	ping := false
	switch {
	case !c.pingSent.IsZero() && time.Since(c.pingSent) > pingTimeout:
		c.mu.Unlock()
		c.close(fmt.Errorf("%w: the peer did not answer a PING in %s", errConnClosed, pingTimeout))
		return
	case c.pingSent.IsZero() && silent >= pingAfter:
		c.pingSent = time.Now()
		ping = true
	}
	next := pingAfter - silent
	if !c.pingSent.IsZero() {
		next = pingTimeout - time.Since(c.pingSent) + time.Millisecond
	}
	c.health.Reset(max(next, time.Second))
	c.mu.Unlock()
	if ping {
		_ = c.write(func() error { return c.fr.WritePing(false, [8]byte{'k', 'z', 'e', 'r', 'o'}) })
	}
}

// consumed gives back to the peer, in WINDOW_UPDATEs, what s (nil: no
// stream) and the connection have consumed, once it is worth a frame.
func (c *h2conn) consumed(s *stream, n int64) {
	if n <= 0 {
		return
	}
	var connInc, streamInc int64
	c.mu.Lock()
	c.unacked += n
	if c.unacked >= connectionWindow/4 {
		connInc, c.unacked = c.unacked, 0
		c.recvWindow += connInc
	}
	if s != nil && !s.recvDone {
		s.unacked += n
		if s.unacked >= streamWindow/4 {
			streamInc, s.unacked = s.unacked, 0
			s.recvWindow += streamInc
		}
	}
	c.mu.Unlock()
	if connInc == 0 && streamInc == 0 {
		return
	}
	c.control(func() error {
		if connInc > 0 {
			if err := c.fr.WriteWindowUpdate(0, uint32(connInc)); err != nil { //nolint:gosec // at most the connection's window, under 2^31
				return err
			}
		}
		if streamInc > 0 {
			return c.fr.WriteWindowUpdate(s.id, uint32(streamInc)) //nolint:gosec // at most the stream's window, under 2^31
		}
		return nil
	})
}

// resetStream sends RST_STREAM for id and ends the stream, if it is known.
func (c *h2conn) resetStream(id uint32, code http2.ErrCode) {
	if s := c.stream(id); s != nil {
		s.abort(fmt.Errorf("tunnel: stream reset: %v", code), false)
	}
	c.control(func() error { return c.fr.WriteRSTStream(id, code) })
}

// goAwayNow tells the peer that no more streams are taken.
func (c *h2conn) goAwayNow(code http2.ErrCode, why string) {
	c.mu.Lock()
	c.goAway = true
	last := c.lastID
	c.mu.Unlock()
	c.control(func() error { return c.fr.WriteGoAway(last, code, []byte(why)) })
}

// close ends the connection and every stream on it, once.
func (c *h2conn) close(why error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = why
	streams := make([]*stream, 0, len(c.streams))
	for _, s := range c.streams {
		streams = append(streams, s)
	}
	if c.idle != nil {
		c.idle.Stop()
	}
	if c.health != nil {
		c.health.Stop()
	}
	if c.expiry != nil {
		c.expiry.Stop()
	}
	c.window.Broadcast()
	c.mu.Unlock()
	_ = c.nc.Close()
	for _, s := range streams {
		s.abort(why, false)
	}
	close(c.done)
	if c.onClose != nil {
		c.onClose(c)
	}
}

// encodeHeaders is the HPACK block of fields, under wmu.
func (c *h2conn) encodeHeaders(fields ...hpack.HeaderField) []byte {
	c.hbuf.Reset()
	for _, f := range fields {
		_ = c.henc.WriteField(f)
	}
	return c.hbuf.Bytes()
}

// stream is one CONNECT stream. Its bytes from the peer go to its sink,
// the TCP connection it is carried to, once it has one (carry), or wait
// in pending for Read.
type stream struct {
	c  *h2conn
	id uint32

	// Under c.mu.
	sendWindow int64
	recvWindow int64
	unacked    int64
	sentEnd    bool // END_STREAM or RST_STREAM sent
	recvDone   bool // END_STREAM received, or the stream reset

	// response receives the client's response HEADERS.
	response chan *http2.MetaHeadersFrame

	mu       sync.Mutex
	readable sync.Cond // on mu: pending grew, or the stream ended
	sink     net.Conn
	raw      syscall.RawConn // sink's, for writes that must not block
	rawWrite func(uintptr) bool
	rawBuf   []byte
	rawN     int
	rawErr   error
	pending  []byte // pending[off:] waits for the sink or Read
	off      int
	draining bool  // a goroutine writes pending to sink
	eof      bool  // the peer ended its side
	err      error // the stream broke
	ended    chan struct{}
	endOnce  sync.Once

	sent, received atomic.Int64
}

// deliver takes the peer's bytes for the stream, from the reader.
func (s *stream) deliver(p []byte, end bool) {
	c := s.c
	c.mu.Lock()
	s.recvWindow -= int64(len(p))
	over := s.recvWindow < 0
	c.mu.Unlock()
	if over {
		c.consumed(nil, int64(len(p)))
		c.resetStream(s.id, http2.ErrCodeFlowControl)
		return
	}
	s.mu.Lock()
	if s.err != nil || s.eof {
		s.mu.Unlock()
		c.consumed(nil, int64(len(p)))
		return
	}
	var wrote int
	if s.raw != nil && !s.draining && len(s.waiting()) == 0 && len(p) > 0 {
		// The fast path: the reader writes to the application's
		// connection itself, as far as it takes without waiting.
		s.rawBuf = p
		werr := s.raw.Write(s.rawWrite)
		wrote, s.rawBuf = s.rawN, nil
		if werr == nil {
			werr = s.rawErr
		}
		if werr != nil {
			s.mu.Unlock()
			c.consumed(s, int64(wrote))
			s.abort(fmt.Errorf("tunnel: deliver: %w", werr), true)
			return
		}
		s.received.Add(int64(wrote))
		p = p[wrote:]
	}
	s.pending = append(s.pending, p...)
	s.eof = end
	if s.sink != nil && !s.draining && (len(s.waiting()) > 0 || s.eof) {
		s.draining = true
		go s.drain()
	}
	s.readable.Broadcast()
	s.mu.Unlock()
	c.consumed(s, int64(wrote))
}

// waiting is what the peer sent that the sink or Read has not taken yet,
// under mu.
func (s *stream) waiting() []byte { return s.pending[s.off:] }

// took drops the first n bytes waiting, under mu; the buffer is used
// again from its start once it is empty.
func (s *stream) took(n int) {
	if s.err != nil {
		return
	}
	s.off += n
	if s.off == len(s.pending) {
		s.pending, s.off = s.pending[:0], 0
	}
}

// tryWrite is the one write attempt of the fast path, on the sink's file
// descriptor; it never waits.
func (s *stream) tryWrite(fd uintptr) bool {
	n, err := unix.Write(int(fd), s.rawBuf)
	s.rawN, s.rawErr = max(n, 0), err
	if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
		s.rawErr = nil
	}
	return true
}

// drain writes what waits in pending to the sink, blocking, then passes
// the peer's end on; the fast path resumes once pending is empty.
func (s *stream) drain() {
	for {
		// deliver only appends to pending, and Read is not used on a
		// stream with a sink: what p holds stays put while it is
		// written.
		s.mu.Lock()
		p, sink := s.waiting(), s.sink
		if len(p) == 0 || s.err != nil {
			s.draining = false
			eof := s.eof && s.err == nil
			s.mu.Unlock()
			if eof {
				closeWrite(sink)
				s.endRecv()
			}
			return
		}
		s.mu.Unlock()
		n, err := sink.Write(p)
		s.mu.Lock()
		s.took(n)
		s.mu.Unlock()
		s.received.Add(int64(n))
		s.c.consumed(s, int64(n))
		if err != nil {
			s.abort(fmt.Errorf("tunnel: deliver: %w", err), true)
			return
		}
	}
}

// endRecv records that the peer's side has ended and been passed on.
func (s *stream) endRecv() {
	c := s.c
	c.mu.Lock()
	s.recvDone = true
	if s.sentEnd {
		c.removeLocked(s)
	}
	c.mu.Unlock()
	s.endOnce.Do(func() { close(s.ended) })
}

// abort ends the stream both ways: its sink is reset, and, when rst, the
// peer is told with RST_STREAM (unless it is this side that ended it).
// A stream both sides had ended is left as it is.
func (s *stream) abort(why error, rst bool) {
	c := s.c
	c.mu.Lock()
	if s.sentEnd && s.recvDone {
		c.mu.Unlock()
		return
	}
	send := rst && c.err == nil
	s.sentEnd, s.recvDone = true, true
	c.removeLocked(s)
	c.window.Broadcast()
	s.mu.Lock()
	if s.err == nil {
		s.err = why
	}
	sink := s.sink
	dropped := int64(len(s.waiting()))
	s.pending, s.off = nil, 0
	s.readable.Broadcast()
	s.mu.Unlock()
	c.mu.Unlock()
	c.consumed(nil, dropped)
	if send {
		c.control(func() error { return c.fr.WriteRSTStream(s.id, http2.ErrCodeCancel) })
	}
	if sink != nil {
		resetConn(sink)
	}
	s.endOnce.Do(func() { close(s.ended) })
}

// writeData sends p on the stream, in as many DATA frames as the windows
// and the peer's frame size allow, ending the stream after it when end.
func (s *stream) writeData(p []byte, end bool) error {
	c := s.c
	if len(p) == 0 && !end {
		return nil
	}
	for {
		c.mu.Lock()
		for c.err == nil && !s.sentEnd && len(p) > 0 && (c.sendWindow <= 0 || s.sendWindow <= 0) {
			c.window.Wait()
		}
		if err := s.writeErrLocked(); err != nil {
			c.mu.Unlock()
			return err
		}
		k := min(int64(len(p)), c.sendWindow, s.sendWindow)
		c.sendWindow -= k
		s.sendWindow -= k
		last := end && k == int64(len(p))
		if last {
			s.sentEnd = true
			if s.recvDone {
				c.removeLocked(s)
			}
		}
		frame := c.peerFrame
		c.mu.Unlock()
		chunk := p[:k]
		p = p[k:]
		err := c.write(func() error {
			for {
				n := min(len(chunk), frame)
				if err := c.fr.WriteData(s.id, last && n == len(chunk), chunk[:n]); err != nil {
					return err
				}
				chunk = chunk[n:]
				if len(chunk) == 0 {
					return nil
				}
			}
		})
		if err != nil {
			return fmt.Errorf("%w: %w", errConnClosed, err)
		}
		s.sent.Add(k)
		if len(p) == 0 {
			return nil
		}
	}
}

// failure is why the stream ended before it opened.
func (s *stream) failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	return errStreamEnded
}

func (s *stream) writeErrLocked() error {
	switch {
	case s.c.err != nil:
		return s.c.err
	case s.sentEnd:
		s.mu.Lock()
		err := s.err
		s.mu.Unlock()
		if err != nil {
			return err
		}
		return errStreamEnded
	}
	return nil
}

// carry connects the stream to app until both directions have ended: the
// peer's bytes go to app, app's to the peer, each side's half-close is
// passed on, and a broken direction ends both. It returns the bytes sent
// to the peer and received from it, and closes app.
func (s *stream) carry(app net.Conn) (sent, received int64) {
	s.attach(app)
	buf := buffers.Get().(*[]byte)
	for {
		n, err := app.Read(*buf)
		if n > 0 {
			if werr := s.writeData((*buf)[:n], false); werr != nil {
				s.abort(werr, true)
				break
			}
		}
		if errors.Is(err, io.EOF) {
			if werr := s.writeData(nil, true); werr != nil {
				s.abort(werr, true)
			}
			break
		}
		if err != nil {
			s.abort(fmt.Errorf("tunnel: read: %w", err), true)
			break
		}
	}
	buffers.Put(buf)
	<-s.ended
	_ = app.Close()
	return s.sent.Load(), s.received.Load()
}

// attach makes app the stream's sink.
func (s *stream) attach(app net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sink = app
	if tc, ok := app.(*net.TCPConn); ok {
		s.raw, _ = tc.SyscallConn()
		s.rawWrite = s.tryWrite
	}
	if s.err != nil {
		resetConn(app)
		return
	}
	if len(s.waiting()) > 0 || s.eof {
		s.draining = true
		go s.drain()
	}
}

// Read reads the peer's bytes, for a stream carried to no connection.
func (s *stream) Read(p []byte) (int, error) {
	s.mu.Lock()
	for len(s.waiting()) == 0 && !s.eof && s.err == nil {
		s.readable.Wait()
	}
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		return 0, err
	}
	n := copy(p, s.waiting())
	s.took(n)
	eof := s.eof && len(s.waiting()) == 0
	s.mu.Unlock()
	s.received.Add(int64(n))
	s.c.consumed(s, int64(n))
	if eof {
		s.endRecv()
		if n == 0 {
			return 0, io.EOF
		}
	}
	return n, nil
}

// Write sends p to the peer.
func (s *stream) Write(p []byte) (int, error) {
	if err := s.writeData(p, false); err != nil {
		if errors.Is(err, errStreamEnded) {
			err = net.ErrClosed
		}
		return 0, err
	}
	return len(p), nil
}

// CloseWrite ends what this side sends.
func (s *stream) CloseWrite() error {
	if err := s.writeData(nil, true); err != nil && !errors.Is(err, errStreamEnded) {
		return err
	}
	return nil
}

// Close ends the stream both ways; the peer sees it reset unless both
// sides had already ended it.
func (s *stream) Close() error {
	s.abort(errStreamEnded, true)
	return nil
}

// LocalAddr and RemoteAddr are the connection's.
func (s *stream) LocalAddr() net.Addr  { return s.c.nc.LocalAddr() }
func (s *stream) RemoteAddr() net.Addr { return s.c.nc.RemoteAddr() }

// Deadlines are not kept on a stream: whoever carries it bounds its life.
func (s *stream) SetDeadline(time.Time) error      { return errNoDeadline }
func (s *stream) SetReadDeadline(time.Time) error  { return errNoDeadline }
func (s *stream) SetWriteDeadline(time.Time) error { return errNoDeadline }

var errNoDeadline = fmt.Errorf("tunnel: a stream keeps no deadline: %w", os.ErrNoDeadline)

// resetConn closes c with a TCP reset, so that the application learns at
// once that its connection broke rather than ended.
func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// expiryOf is when the first of a handshake's two SVIDs expires: the
// peer's leaf, and this side's own, as own gives it just after.
func expiryOf(cs tls.ConnectionState, own x509svid.Source) time.Time {
	var t time.Time
	if len(cs.PeerCertificates) > 0 {
		t = cs.PeerCertificates[0].NotAfter
	}
	if svid, err := own.GetX509SVID(); err == nil && len(svid.Certificates) > 0 {
		if mine := svid.Certificates[0].NotAfter; t.IsZero() || mine.Before(t) {
			t = mine
		}
	}
	return t
}

// header is the first value of the field name (lower case) of f.
func header(f *http2.MetaHeadersFrame, name string) string {
	for _, hf := range f.RegularFields() {
		if hf.Name == name {
			return hf.Value
		}
	}
	return ""
}

var reasonField = strings.ToLower(ReasonHeader)
