package redirect

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ListenIn opens a TCP listener on addr inside the network namespace
// netns, from a process in another one: the socket belongs to the
// namespace it was made in, whatever thread later uses it. It is IPv4
// only, as the capture is, so that its connections' addresses are IPv4
// (a dual-stack socket reports them mapped into IPv6).
func ListenIn(netns, addr string) (net.Listener, error) {
	var ln net.Listener
	// No TCP keep-alive on its connections: they are the pod's own, local
	// ones, and each would cost setsockopt calls.
	lc := net.ListenConfig{KeepAlive: -1}
	err := do(netns, func() error {
		var err error
		ln, err = lc.Listen(context.Background(), "tcp4", addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("redirect: listen on %s in %s: %w", addr, netns, err)
	}
	return ln, nil
}

// DialIn connects to addr from inside netns, with mark as the socket's
// SO_MARK (0: none), so that a connection the agent makes on a pod's
// behalf, marked with Mark, passes the pod's rules uncaptured.
func DialIn(ctx context.Context, netns string, addr netip.AddrPort, mark uint32) (net.Conn, error) {
	d := &net.Dialer{KeepAlive: -1}
	if mark != 0 {
		d.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark))
			}); err != nil {
				return err
			}
			if serr != nil {
				return fmt.Errorf("set SO_MARK (needs CAP_NET_ADMIN): %w", serr)
			}
			return nil
		}
	}
	var conn net.Conn
	err := do(netns, func() error {
		var err error
		conn, err = d.DialContext(ctx, "tcp", addr.String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("redirect: dial %s from %s: %w", addr, netns, err)
	}
	return conn, nil
}

// Do runs f on an OS thread moved into the network namespace netns, then
// moves the thread back: what f makes there (sockets) stays in netns. f
// must not start goroutines that expect to be in netns. A thread that
// cannot go back is never used again: its goroutine ends still locked to
// it, and the runtime ends the thread.
func Do(netns string, f func() error) error {
	if err := do(netns, f); err != nil {
		return fmt.Errorf("redirect: in %s: %w", netns, err)
	}
	return nil
}

func do(netns string, f func() error) error {
	target, err := os.Open(netns) //nolint:gosec // the namespace's file is the caller's to name: a pod's, found by the agent
	if err != nil {
		return fmt.Errorf("open the network namespace: %w", err)
	}
	defer func() { _ = target.Close() }()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("open this thread's network namespace: %w", err)
			return
		}
		defer func() { _ = self.Close() }()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("enter the network namespace (needs CAP_SYS_ADMIN): %w", err)
			return
		}
		ferr := f()
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			// Stay locked: this thread dies with the goroutine.
			done <- errors.Join(ferr, fmt.Errorf("return to the agent's network namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		done <- ferr
	}()
	return <-done
}

// OriginalDst is where a connection that a capture rule redirected was
// headed (SO_ORIGINAL_DST): the pod's real destination for an outbound
// connection, the pod's own address and port for an inbound one.
func OriginalDst(c net.Conn) (netip.AddrPort, error) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("redirect: %T is not a TCP connection", c)
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("redirect: %w", err)
	}
	var buf [unix.SizeofSockaddrInet4]byte
	var serr error
	if err := rc.Control(func(fd uintptr) {
		size := uint32(len(buf))
		// x/sys has no getter for a sockaddr_in option: the raw call,
		// into a buffer of exactly its size.
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_IP, unix.SO_ORIGINAL_DST,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&size)), 0) //nolint:gosec // G103: sized buffer, as above
		if errno != 0 {
			serr = errno
		}
	}); err != nil {
		return netip.AddrPort{}, fmt.Errorf("redirect: %w", err)
	}
	if serr != nil {
		return netip.AddrPort{}, fmt.Errorf("redirect: the connection was not redirected (SO_ORIGINAL_DST: %w)", serr)
	}
	return parseSockaddrIn(buf[:])
}

// Netns is a network namespace held open, with one OS thread inside it
// that makes the sockets of the connections dialled from there: a dial
// costs a socket(2) on that thread and a connect(2) on any, instead of a
// thread moved in and out of the namespace (two opens, two setns(2)). It
// is safe for concurrent use; Close it when the namespace's pod is gone.
//
// The thread keeps a few sockets marked with Mark made ahead (stockSize),
// so that a dial with Mark takes one without waiting for the thread: a
// thread locked to its goroutine runs only when the scheduler gives it a
// processor, which under load can take a time slice (10 ms).
type Netns struct {
	path  string
	reqs  chan socketRequest
	stock chan int // sockets marked with Mark, made ahead
	stop  chan struct{}
	done  chan struct{}
}

// stockSize is how many sockets a Netns makes ahead.
const stockSize = 4

type socketRequest struct {
	mark  uint32
	reply chan socketReply
}

type socketReply struct {
	fd  int
	err error
}

// OpenNetns holds the network namespace netns open and starts its socket
// thread.
func OpenNetns(netns string) (*Netns, error) {
	f, err := os.Open(netns) //nolint:gosec // the namespace's file is the caller's to name: a pod's, found by the agent
	if err != nil {
		return nil, fmt.Errorf("redirect: open the network namespace %s: %w", netns, err)
	}
	n := &Netns{path: netns, reqs: make(chan socketRequest), stock: make(chan int, stockSize), stop: make(chan struct{}), done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		defer close(n.done)
		// Locked for good: the thread never leaves the namespace, and
		// the runtime ends it with this goroutine.
		runtime.LockOSThread()
		err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
		_ = f.Close()
		started <- err
		if err != nil {
			return
		}
		n.serve()
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("redirect: enter the network namespace %s (needs CAP_SYS_ADMIN): %w", netns, err)
	}
	return n, nil
}

// serve makes sockets, on the namespace's thread, until Close: on request,
// and ahead for the stock. A socket that cannot be made ahead is made on
// the next request instead, which says why.
func (n *Netns) serve() {
	next := makeSocket(Mark)
	defer func() {
		if next.err == nil {
			_ = unix.Close(next.fd)
		}
		for {
			select {
			case fd := <-n.stock:
				_ = unix.Close(fd)
			default:
				return
			}
		}
	}()
	for {
		stock := n.stock
		if next.err != nil {
			stock = nil // no socket in hand to stock
		}
		select {
		case <-n.stop:
			return
		case stock <- next.fd:
			next = makeSocket(Mark)
		case r := <-n.reqs:
			r.reply <- makeSocket(r.mark)
			if next.err != nil {
				next = makeSocket(Mark)
			}
		}
	}
}

// makeSocket makes a non-blocking IPv4 TCP socket in the calling thread's
// network namespace, with mark as its SO_MARK (0: none).
func makeSocket(mark uint32) socketReply {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return socketReply{fd: -1, err: fmt.Errorf("socket: %w", err)}
	}
	if mark != 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, int(mark)); err != nil {
			_ = unix.Close(fd)
			return socketReply{fd: -1, err: fmt.Errorf("set SO_MARK (needs CAP_NET_ADMIN): %w", err)}
		}
	}
	return socketReply{fd: fd}
}

// errNetnsClosed is a dial after Close.
var errNetnsClosed = errors.New("the network namespace was closed")

// Dial connects to addr (IPv4) from inside the namespace, with mark as the
// socket's SO_MARK (0: none), as DialIn does.
func (n *Netns) Dial(ctx context.Context, addr netip.AddrPort, mark uint32) (net.Conn, error) {
	c, err := n.dial(ctx, addr, mark)
	if err != nil {
		return nil, fmt.Errorf("redirect: dial %s from %s: %w", addr, n.path, err)
	}
	return c, nil
}

func (n *Netns) dial(ctx context.Context, addr netip.AddrPort, mark uint32) (net.Conn, error) {
	if !addr.Addr().Is4() {
		return nil, errors.New("only IPv4 addresses are dialled")
	}
	r, err := n.socket(ctx, mark)
	if err != nil {
		return nil, err
	}
	// Pollable: the runtime's poller waits for the connection.
	f := os.NewFile(uintptr(r.fd), "tcp")
	defer func() { _ = f.Close() }() // FileConn holds a duplicate
	err = unix.Connect(r.fd, &unix.SockaddrInet4{Port: int(addr.Port()), Addr: addr.Addr().As4()})
	if err != nil && !errors.Is(err, unix.EINPROGRESS) {
		return nil, err
	}
	if errors.Is(err, unix.EINPROGRESS) {
		if err := waitConnected(ctx, f); err != nil {
			return nil, err
		}
	}
	return net.FileConn(f)
}

// socket is a socket of the namespace with mark: one of the stock, or one
// the thread makes now.
func (n *Netns) socket(ctx context.Context, mark uint32) (socketReply, error) {
	if mark == Mark {
		select {
		case fd := <-n.stock:
			return socketReply{fd: fd}, nil
		default:
		}
	}
	reply := make(chan socketReply, 1)
	select {
	case n.reqs <- socketRequest{mark: mark, reply: reply}:
	case <-n.stop:
		return socketReply{}, errNetnsClosed
	case <-ctx.Done():
		return socketReply{}, ctx.Err()
	}
	r := <-reply
	return r, r.err
}

// waitConnected waits until the connect(2) under way on f ends, or ctx
// does.
func waitConnected(ctx context.Context, f *os.File) error {
	if d, ok := ctx.Deadline(); ok {
		_ = f.SetWriteDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { _ = f.SetWriteDeadline(time.Unix(1, 0)) })
	defer stop()
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var cerr error
	werr := rc.Write(func(fd uintptr) bool {
		soerr, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
		switch {
		case err != nil:
			cerr = err
			return true
		case soerr != 0:
			cerr = unix.Errno(soerr) //nolint:gosec // an errno
			return true
		}
		if _, err := unix.Getpeername(int(fd)); err == nil {
			return true
		}
		return false // still connecting: wait until writable
	})
	if werr != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return werr
	}
	return cerr
}

// Close stops the socket thread; the namespace is let go. Connections
// dialled from it live on.
func (n *Netns) Close() error {
	select {
	case <-n.stop:
	default:
		close(n.stop)
	}
	<-n.done
	return nil
}
