package workloadapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"kzero.dev/kzero/internal/agentapi"
)

// Statuses of the JWT-SVID profile.
var (
	errNoAudience  = status.Error(codes.InvalidArgument, "audience must be specified")
	errNoSVID      = status.Error(codes.InvalidArgument, "svid must be specified")
	errNoJWTBundle = status.Error(codes.Unavailable, "the agent has no JWT bundle yet: retry with backoff")
	errNoJWTSVID   = status.Error(codes.Unavailable, "the agent cannot get a JWT-SVID from the authority now: retry with backoff")
)

// FetchJWTSVID returns a JWT-SVID of the caller's ID for the audience,
// within agentapi's limits, from the cache until half its life. A
// spiffe_id in the request must be the caller's own.
func (a *api) FetchJWTSVID(ctx context.Context, req *workload.JWTSVIDRequest) (*workload.JWTSVIDResponse, error) {
	if len(req.GetAudience()) == 0 || slices.Contains(req.GetAudience(), "") {
		return nil, errNoAudience
	}
	if msg := agentapi.AudienceProblem(req.GetAudience()); msg != "" {
		return nil, status.Error(codes.InvalidArgument, msg)
	}
	var want spiffeid.ID
	if req.GetSpiffeId() != "" {
		var err error
		if want, err = spiffeid.FromString(req.GetSpiffeId()); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "spiffe_id %q is not a SPIFFE ID: %v", req.GetSpiffeId(), err)
		}
	}
	id, err := a.attest(ctx)
	if err != nil {
		return nil, err
	}
	if !want.IsZero() && want != id {
		return nil, status.Errorf(codes.PermissionDenied, "the calling process may not have %s: it is %s; leave spiffe_id empty to get its own", want, id)
	}
	token, err := a.jwt.get(ctx, id, req.GetAudience())
	switch {
	case ctx.Err() != nil:
		return nil, status.FromContextError(ctx.Err()).Err()
	case errors.Is(err, context.Canceled):
		return nil, errStopping
	case errors.Is(err, errJWTRate):
		return nil, status.Errorf(codes.ResourceExhausted,
			"%s has asked for new JWT-SVIDs faster than %d a second (%d at once): reuse the audiences it asks for, whose JWT-SVIDs the agent keeps until half their life, and retry with backoff",
			id, jwtSignRate, jwtSignBurst)
	case err != nil:
		a.cfg.Log.Warn("getting a JWT-SVID signed failed", "id", id.String(), "audience", logAudience(req.GetAudience()), "error", err)
		return nil, errNoJWTSVID
	}
	return &workload.JWTSVIDResponse{Svids: []*workload.JWTSVID{{SpiffeId: id.String(), Svid: token}}}, nil
}

// FetchJWTBundles streams the JWT authorities of every trust domain the
// agent trusts, as JWKS documents, again after every change.
func (a *api) FetchJWTBundles(_ *workload.JWTBundlesRequest, stream grpc.ServerStreamingServer[workload.JWTBundlesResponse]) error {
	ctx := stream.Context()
	for {
		if _, err := a.attest(ctx); err != nil {
			return err
		}
		bundles, changed := a.cfg.Bundles.snapshot()
		if _, ok := bundles.jwks[a.cfg.TrustDomain.IDString()]; !ok {
			return errNoJWTBundle
		}
		if err := stream.Send(&workload.JWTBundlesResponse{Bundles: bundles.jwks}); err != nil {
			return err
		}
		if err := a.waitChange(ctx, nil, changed); err != nil {
			return err
		}
	}
}

// ValidateJWTSVID validates a JWT-SVID for the audience against the JWT
// authorities of its subject's trust domain, per the JWT-SVID standard
// (go-spiffe's jwtsvid.ParseAndValidate, which reads the wall clock), and
// returns its SPIFFE ID and claims. A token that does not validate is an
// InvalidArgument, as in SPIRE.
func (a *api) ValidateJWTSVID(ctx context.Context, req *workload.ValidateJWTSVIDRequest) (*workload.ValidateJWTSVIDResponse, error) {
	if req.GetAudience() == "" {
		return nil, errNoAudience
	}
	if n := len(req.GetAudience()); n > agentapi.MaxAudienceBytes {
		return nil, status.Errorf(codes.InvalidArgument, "audience is %d bytes long; an audience is at most %d bytes", n, agentapi.MaxAudienceBytes)
	}
	if req.GetSvid() == "" {
		return nil, errNoSVID
	}
	if _, err := a.attest(ctx); err != nil {
		return nil, err
	}
	bundles, _ := a.cfg.Bundles.snapshot()
	svid, err := jwtsvid.ParseAndValidate(req.GetSvid(), bundles.jwt, []string{req.GetAudience()})
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	claims, err := structpb.NewStruct(svid.Claims)
	if err != nil {
		return nil, status.Error(codes.Internal, fmt.Sprintf("the token's claims do not convert to a protobuf Struct: %v", err))
	}
	return &workload.ValidateJWTSVIDResponse{SpiffeId: svid.ID.String(), Claims: claims}, nil
}

// Bounds of an audience in the logs.
const (
	logAudienceValues = 4  // values shown
	logAudienceBytes  = 64 // bytes shown of each
)

// logAudience is an audience as the logs show it: the first
// logAudienceValues values, each cut to logAudienceBytes. A caller chooses
// its audience, and the log line must not grow with it.
type logAudience []string

// LogValue implements slog.LogValuer.
func (a logAudience) LogValue() slog.Value {
	var b strings.Builder
	b.WriteByte('[')
	for i, v := range a[:min(len(a), logAudienceValues)] {
		if i > 0 {
			b.WriteByte(' ')
		}
		if len(v) > logAudienceBytes {
			v = strings.ToValidUTF8(v[:logAudienceBytes], "") + "…(" + strconv.Itoa(len(v)) + " bytes)"
		}
		b.WriteString(strconv.Quote(v))
	}
	if len(a) > logAudienceValues {
		fmt.Fprintf(&b, " …(%d values)", len(a))
	}
	b.WriteByte(']')
	return slog.StringValue(b.String())
}
