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
	err := do(netns, func() error {
		var err error
		ln, err = net.Listen("tcp4", addr)
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
	d := &net.Dialer{}
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
