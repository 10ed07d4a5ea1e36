package tunnel

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// FuzzServerFrames sends a server connection whatever frames a peer
// might, after the preface: whatever they are, the connection answers or
// ends, and never panics, hangs or grows without bound. (A peer reaches
// this only after its SVID has verified; a pod of the mesh is such a
// peer.)
func FuzzServerFrames(f *testing.F) {
	for _, seed := range seedFrames() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, frames []byte) {
		peer, mine := net.Pipe()
		c := newH2conn(mine, true, time.Minute)
		c.onStream = func(st *stream, hf *http2.MetaHeadersFrame) {
			refuse(st, http.StatusForbidden, "fuzz: "+hf.PseudoValue("authority"))
		}
		go func() { _, _ = io.Copy(io.Discard, peer) }()
		if err := c.start(); err != nil {
			t.Fatal(err)
		}
		_, _ = peer.Write(frames)
		_ = peer.Close()
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			t.Fatal("the connection did not end when its peer did")
		}
	})
}

// seedFrames are frames a client sends: SETTINGS, a CONNECT, DATA, a
// WINDOW_UPDATE, PING, RST_STREAM, GOAWAY, and some that break the rules.
func seedFrames() [][]byte {
	var seeds [][]byte
	frame := func(write func(fr *http2.Framer, block func(...hpack.HeaderField) []byte)) {
		var out, hb bytes.Buffer
		fr := http2.NewFramer(&out, nil)
		fr.AllowIllegalWrites = true
		enc := hpack.NewEncoder(&hb)
		write(fr, func(fields ...hpack.HeaderField) []byte {
			hb.Reset()
			for _, f := range fields {
				_ = enc.WriteField(f)
			}
			return hb.Bytes()
		})
		seeds = append(seeds, out.Bytes())
	}
	connect := func(authority string) []hpack.HeaderField {
		return []hpack.HeaderField{{Name: ":method", Value: "CONNECT"}, {Name: ":authority", Value: authority}}
	}
	frame(func(fr *http2.Framer, block func(...hpack.HeaderField) []byte) {
		_ = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block(connect("10.0.0.1:8080")...), EndHeaders: true})
		_ = fr.WriteData(1, false, []byte("hello"))
		_ = fr.WriteWindowUpdate(0, 1<<20)
		_ = fr.WritePing(false, [8]byte{1})
		_ = fr.WriteData(1, true, nil)
	})
	frame(func(fr *http2.Framer, block func(...hpack.HeaderField) []byte) {
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: block(connect("not an address")...), EndHeaders: true, EndStream: true})
		_ = fr.WriteRSTStream(3, http2.ErrCodeCancel)
		_ = fr.WriteGoAway(3, http2.ErrCodeNo, []byte("bye"))
	})
	frame(func(fr *http2.Framer, block func(...hpack.HeaderField) []byte) {
		// A stream number going backwards, DATA on a stream never
		// opened, a window overflowing.
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 5, BlockFragment: block(connect("10.0.0.1:1")...), EndHeaders: true})
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block(connect("10.0.0.1:2")...), EndHeaders: true})
		_ = fr.WriteData(7, false, []byte("x"))
		_ = fr.WriteWindowUpdate(5, 1<<31-1)
		_ = fr.WriteWindowUpdate(5, 1<<31-1)
	})
	frame(func(fr *http2.Framer, block func(...hpack.HeaderField) []byte) {
		// HEADERS split over CONTINUATION, then a GET.
		b := block(connect("10.0.0.1:8080")...)
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: b[:3]})
		_ = fr.WriteContinuation(1, true, b[3:])
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: block(hpack.HeaderField{Name: ":method", Value: "GET"}, hpack.HeaderField{Name: ":path", Value: "/"}), EndHeaders: true, EndStream: true})
	})
	return seeds
}

// TestRapidResetIsBounded opens streams and resets each at once, as the
// "rapid reset" attack (CVE-2023-44487) does: the streams a server is
// still deciding count against its limit after their reset, so the peer
// gets no more decisions going than the limit, and the others refused.
func TestRapidResetIsBounded(t *testing.T) {
	peer, mine := net.Pipe()
	defer peer.Close()
	c := newH2conn(mine, true, time.Minute)
	c.maxHandling = 4
	release := make(chan struct{})
	var started atomic.Int32
	c.onStream = func(st *stream, _ *http2.MetaHeadersFrame) {
		started.Add(1)
		<-release // a decision that takes its time
		refuse(st, http.StatusForbidden, "late")
	}
	defer close(release)
	refused := make(chan uint32, 100)
	go func() {
		fr := http2.NewFramer(io.Discard, peer)
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			if rst, ok := f.(*http2.RSTStreamFrame); ok && rst.ErrCode == http2.ErrCodeRefusedStream {
				refused <- rst.StreamID
			}
		}
	}()
	if err := c.start(); err != nil {
		t.Fatal(err)
	}
	var out, hb bytes.Buffer
	fr := http2.NewFramer(&out, nil)
	enc := hpack.NewEncoder(&hb)
	// The preface is serveConn's to read, before the connection is made.
	_ = fr.WriteSettings()
	for i := range 20 {
		id := uint32(2*i + 1)
		hb.Reset()
		_ = enc.WriteField(hpack.HeaderField{Name: ":method", Value: "CONNECT"})
		_ = enc.WriteField(hpack.HeaderField{Name: ":authority", Value: "10.0.0.1:80"})
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndHeaders: true})
		_ = fr.WriteRSTStream(id, http2.ErrCodeCancel)
	}
	if _, err := peer.Write(out.Bytes()); err != nil {
		t.Fatal(err)
	}
	for n := range 16 {
		select {
		case <-refused:
		case <-time.After(10 * time.Second):
			t.Fatalf("%d streams refused, want the 16 of 20 beyond the limit of 4", n)
		}
	}
	if n := started.Load(); n != 4 {
		t.Errorf("%d decisions under way, want the limit, 4", n)
	}
}
