package workloadapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// Caller is the process at the other end of a Workload API connection, as
// the kernel saw it when the connection was made (SO_PEERCRED). The
// process may have exited, and its PID been reused, by the time a request
// arrives: an Attestor must check that what it finds for PID is still the
// same process (for instance that the connection is older than the process
// it finds).
type Caller struct {
	// PID is the process ID of the process that connected, in the agent's
	// PID namespace (kzero agent runs with the host's); 0 if that process
	// is in a PID namespace the agent cannot see.
	PID int32
	// UID and GID are its effective user and group IDs when it connected.
	UID, GID uint32
}

// callerInfo is the grpc AuthInfo of a connection: who is on the other end.
type callerInfo struct {
	credentials.CommonAuthInfo
	Caller
	// limitKey is what the limits count the connection under; empty when
	// it was accepted by a listener that does not count.
	limitKey string
}

func (callerInfo) AuthType() string { return authType }

const authType = "peercred"

// errClientSide is what peerCredentials answers a client handshake with.
var errClientSide = errors.New("workloadapi: peer credentials are for the server side only")

// peerCredentials is grpc transport credentials that add no security of
// their own (the Workload Endpoint standard forbids requiring TLS): the
// server handshake reads the peer's credentials from the unix socket, so
// that every request on the connection knows its Caller.
type peerCredentials struct{}

var _ credentials.TransportCredentials = peerCredentials{}

// ServerHandshake reads SO_PEERCRED; a connection whose peer cannot be read
// (not a unix socket) is refused.
func (peerCredentials) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	if cc, ok := conn.(*callerConn); ok { // read when accepted
		return conn, callerInfo{CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.NoSecurity}, Caller: cc.caller, limitKey: cc.limitKey}, nil
	}
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil, nil, fmt.Errorf("workloadapi: a %T is not a unix socket connection: the Workload API identifies callers by their socket's credentials", conn)
	}
	c, err := peerOf(sc)
	if err != nil {
		return nil, nil, err
	}
	return conn, callerInfo{CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.NoSecurity}, Caller: c}, nil
}

func (peerCredentials) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errClientSide
}

func (peerCredentials) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: authType}
}

func (peerCredentials) Clone() credentials.TransportCredentials { return peerCredentials{} }

func (peerCredentials) OverrideServerName(string) error { return nil }

// callerFrom returns the Caller of the connection a request came on.
func callerFrom(ctx context.Context) (Caller, bool) {
	info, ok := callerInfoFrom(ctx)
	return info.Caller, ok
}

// callerInfoFrom returns what the handshake found of the connection a
// request came on.
func callerInfoFrom(ctx context.Context) (callerInfo, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return callerInfo{}, false
	}
	info, ok := p.AuthInfo.(callerInfo)
	return info, ok
}
