package tunnel

import (
	"io"
	"net"
	"sync"
)

// copyBuffer is the size of the buffers that carry a stream's bytes.
const copyBuffer = 64 << 10

// buffers are the copy buffers of the connections being carried: each
// direction holds one while it lasts, and gives it back after.
var buffers = sync.Pool{New: func() any {
	b := make([]byte, copyBuffer)
	return &b
}}

// Pipe carries bytes both ways between two connections, as a stream
// carries them: each side's half-close is passed on to the other, a
// broken direction closes both, and both are closed once both directions
// have ended. It returns the bytes from a to b and from b to a.
//
// When b is a stream of a Client, the stream carries a itself: the
// tunnel's reader writes the peer's bytes straight to a.
func Pipe(a, b net.Conn) (aToB, bToA int64) {
	if s, ok := b.(*stream); ok {
		return s.carry(a)
	}
	var wg sync.WaitGroup
	wg.Go(func() { aToB = copyHalf(b, a) })
	bToA = copyHalf(a, b)
	wg.Wait()
	_ = a.Close()
	_ = b.Close()
	return aToB, bToA
}

// copyHalf copies src to dst until src ends, then half-closes dst; if the
// copy breaks, it closes dst (and src, when it is a connection), which
// ends the other direction too. It returns the bytes copied.
func copyHalf(dst io.Writer, src io.Reader) int64 {
	var n int64
	var err error
	if isTCP(dst) && isTCP(src) {
		// The kernel copies: splice(2), no buffer at all.
		n, err = io.Copy(dst, src)
	} else {
		// Hidden ReadFrom and WriteTo: a TCP connection's would copy
		// through a buffer of its own, made anew for each connection.
		buf := buffers.Get().(*[]byte)
		defer buffers.Put(buf)
		n, err = io.CopyBuffer(writerOnly{dst}, readerOnly{src}, *buf)
	}
	if err != nil {
		closeAll(dst, src)
		return n
	}
	if c, ok := dst.(net.Conn); ok {
		closeWrite(c)
	}
	return n
}

func closeAll(xs ...any) {
	for _, x := range xs {
		if c, ok := x.(io.Closer); ok {
			_ = c.Close()
		}
	}
}

// closeWrite half-closes c if it can, else closes it.
func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		return
	}
	_ = c.Close()
}

func isTCP(x any) bool {
	_, ok := x.(*net.TCPConn)
	return ok
}

// writerOnly and readerOnly hide every method but Write and Read.
type writerOnly struct{ io.Writer }

type readerOnly struct{ io.Reader }
