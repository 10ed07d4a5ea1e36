package workloadapi

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// peerOf reads the credentials of the process at the other end of a unix
// socket, as they were when it connected.
func peerOf(sc syscall.Conn) (Caller, error) {
	raw, err := sc.SyscallConn()
	if err != nil {
		return Caller{}, fmt.Errorf("workloadapi: peer credentials: %w", err)
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return Caller{}, fmt.Errorf("workloadapi: peer credentials: %w", err)
	}
	if credErr != nil {
		return Caller{}, fmt.Errorf("workloadapi: peer credentials (SO_PEERCRED): %w", credErr)
	}
	return Caller{PID: cred.Pid, UID: cred.Uid, GID: cred.Gid}, nil
}
