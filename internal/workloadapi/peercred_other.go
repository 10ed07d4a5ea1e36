//go:build !linux

package workloadapi

import (
	"errors"
	"syscall"
)

// peerOf needs SO_PEERCRED, which is Linux's: elsewhere every connection is
// refused, since no caller could be attested.
func peerOf(syscall.Conn) (Caller, error) {
	return Caller{}, errors.New("workloadapi: reading a caller's credentials (SO_PEERCRED) needs Linux")
}
