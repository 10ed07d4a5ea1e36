package workloadapi

import (
	"context"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// api is the SpiffeWorkloadAPI service of a running Server.
type api struct {
	workload.UnimplementedSpiffeWorkloadAPIServer
	cfg   *Config
	cache *cache
	jwt   *jwtCache
	// stop is closed when the server stops: streams end.
	stop <-chan struct{}
}

// securityHeader is the gRPC metadata every request must carry, with the
// value "true", per the SPIFFE Workload Endpoint standard: it keeps server
// side request forgery from reaching the socket.
const securityHeader = "workload.spiffe.io"

// Statuses common to every RPC.
var (
	errNoHeader = status.Error(codes.InvalidArgument, msgNoHeader)
	errStopping = status.Error(codes.Unavailable, "the agent is shutting down: connect again")
)

// hasSecurityHeader says whether a request carries the header once, with
// the value "true" exactly, as SPIRE checks it.
func hasSecurityHeader(ctx context.Context) bool {
	v := metadata.ValueFromIncomingContext(ctx, securityHeader)
	return len(v) == 1 && v[0] == "true"
}

func requireHeaderUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if !hasSecurityHeader(ctx) {
		return nil, errNoHeader
	}
	return handler(ctx, req)
}

func requireHeaderStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if !hasSecurityHeader(ss.Context()) {
		return errNoHeader
	}
	return handler(srv, ss)
}

// waitChange waits until svid or bundles is closed (a nil one never is);
// it returns nil then, or the status to end the stream with when the
// client goes or the server stops.
func (a *api) waitChange(ctx context.Context, svid, bundles <-chan struct{}) error {
	select {
	case <-svid:
		return nil
	case <-bundles:
		return nil
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	case <-a.stop:
		return errStopping
	}
}
