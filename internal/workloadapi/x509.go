package workloadapi

import (
	"context"
	"errors"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Statuses of the X.509-SVID profile.
var (
	errNoX509Bundle = status.Error(codes.Unavailable, "the agent has no X.509 trust bundle yet: retry with backoff")
	errNoX509SVID   = status.Error(codes.Unavailable, "the agent cannot get an X.509-SVID from the authority now: retry with backoff")
)

// FetchX509SVID streams the caller's X.509-SVID with its private key and
// the bundles: the first message as soon as the SVID is signed (at once
// when cached), then the whole state again after every renewal and every
// bundle change. The caller is attested again before every message.
func (a *api) FetchX509SVID(_ *workload.X509SVIDRequest, stream grpc.ServerStreamingServer[workload.X509SVIDResponse]) error {
	ctx := stream.Context()
	var id spiffeid.ID
	release := func() {}
	defer func() { release() }()
	for {
		next, err := a.attest(ctx)
		if err != nil {
			return err
		}
		if next != id {
			release()
			id, release = next, a.cache.watch(next)
		}
		svid, svidChanged, err := a.cache.get(ctx, id)
		if err != nil {
			return a.signError(ctx, err)
		}
		bundles, bundlesChanged := a.cfg.Bundles.snapshot()
		own, ok := bundles.x509[a.cfg.TrustDomain.IDString()]
		if !ok {
			return errNoX509Bundle
		}
		if err := stream.Send(&workload.X509SVIDResponse{
			Svids: []*workload.X509SVID{{
				SpiffeId:    id.String(),
				X509Svid:    svid.chain,
				X509SvidKey: svid.key,
				Bundle:      own,
			}},
			FederatedBundles: bundles.federated(a.cfg.TrustDomain),
		}); err != nil {
			return err
		}
		if err := a.waitChange(ctx, svidChanged, bundlesChanged); err != nil {
			return err
		}
	}
}

// FetchX509Bundles streams the X.509 authorities of every trust domain the
// agent trusts, again after every change.
func (a *api) FetchX509Bundles(_ *workload.X509BundlesRequest, stream grpc.ServerStreamingServer[workload.X509BundlesResponse]) error {
	ctx := stream.Context()
	for {
		if _, err := a.attest(ctx); err != nil {
			return err
		}
		bundles, changed := a.cfg.Bundles.snapshot()
		if _, ok := bundles.x509[a.cfg.TrustDomain.IDString()]; !ok {
			return errNoX509Bundle
		}
		if err := stream.Send(&workload.X509BundlesResponse{Bundles: bundles.x509}); err != nil {
			return err
		}
		if err := a.waitChange(ctx, nil, changed); err != nil {
			return err
		}
	}
}

// signError is the status for a failure to get an SVID: the client's own
// end, the server's, or the authority's (logged where it happened).
func (a *api) signError(ctx context.Context, err error) error {
	switch {
	case ctx.Err() != nil:
		return status.FromContextError(ctx.Err()).Err()
	case errors.Is(err, context.Canceled):
		return errStopping
	default:
		return errNoX509SVID
	}
}
