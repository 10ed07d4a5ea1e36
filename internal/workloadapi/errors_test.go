package workloadapi

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"kzero.dev/kzero/internal/ca"
	"kzero.dev/kzero/internal/ca/catest"
)

// rpc makes one call and returns its error; a stream's is that of its first
// message.
type rpc func(ctx context.Context, e *env, c workload.SpiffeWorkloadAPIClient) error

func recvFirst[T any](s interface{ Recv() (*T, error) }, err error) error {
	if err != nil {
		return err
	}
	_, err = s.Recv()
	return err
}

func fetchX509SVID(ctx context.Context, _ *env, c workload.SpiffeWorkloadAPIClient) error {
	return recvFirst[workload.X509SVIDResponse](c.FetchX509SVID(ctx, &workload.X509SVIDRequest{}))
}

func fetchX509Bundles(ctx context.Context, _ *env, c workload.SpiffeWorkloadAPIClient) error {
	return recvFirst[workload.X509BundlesResponse](c.FetchX509Bundles(ctx, &workload.X509BundlesRequest{}))
}

func fetchJWTBundles(ctx context.Context, _ *env, c workload.SpiffeWorkloadAPIClient) error {
	return recvFirst[workload.JWTBundlesResponse](c.FetchJWTBundles(ctx, &workload.JWTBundlesRequest{}))
}

func fetchJWTSVID(req *workload.JWTSVIDRequest) rpc {
	return func(ctx context.Context, _ *env, c workload.SpiffeWorkloadAPIClient) error {
		_, err := c.FetchJWTSVID(ctx, req)
		return err
	}
}

func validate(req *workload.ValidateJWTSVIDRequest) rpc {
	return func(ctx context.Context, _ *env, c workload.SpiffeWorkloadAPIClient) error {
		_, err := c.ValidateJWTSVID(ctx, req)
		return err
	}
}

// validateIssued validates a token the CA of the test (or partner's, when
// foreign) issues for aud, against want.
func validateIssued(aud, want string, foreign bool) rpc {
	return func(ctx context.Context, e *env, c workload.SpiffeWorkloadAPIClient) error {
		issuer, id := e.ca, webID
		if foreign {
			var err error
			if issuer, err = ca.New(ctx, ca.Config{TrustDomain: partnerTD, Store: catest.NewMemStore(nil), Now: e.clock.Now}); err != nil {
				return err
			}
			id = spiffeid.RequireFromString("spiffe://partner.example/ns/app/sa/web")
		}
		svid, err := issuer.IssueJWTSVID(ca.JWTRequest{ID: id, Audience: []string{aud}})
		if err != nil {
			return err
		}
		_, err = c.ValidateJWTSVID(ctx, &workload.ValidateJWTSVIDRequest{Svid: svid.Token, Audience: want})
		return err
	}
}

// everyRPC is one well-formed call of each RPC.
var everyRPC = map[string]rpc{
	"FetchX509SVID":    fetchX509SVID,
	"FetchX509Bundles": fetchX509Bundles,
	"FetchJWTSVID":     fetchJWTSVID(&workload.JWTSVIDRequest{Audience: []string{audience}}),
	"FetchJWTBundles":  fetchJWTBundles,
	"ValidateJWTSVID":  validate(&workload.ValidateJWTSVIDRequest{Audience: audience, Svid: "x.y.z"}),
}

// refusal is an attestor's own error type with a message for the caller.
type refusal struct{}

func (refusal) Error() string {
	return "pid 42 in pod other/secret-thing: namespace other not enrolled"
}
func (refusal) PublicMessage() string { return "the caller's namespace is not enrolled in kzero" }

func attestAs(id spiffeid.ID, err error) func(*Config) {
	return func(c *Config) {
		c.Attestor = AttestorFunc(func(context.Context, Caller) (spiffeid.ID, error) { return id, err })
	}
}

func TestRefusalsOfEveryRPC(t *testing.T) {
	for _, tc := range []struct {
		name   string
		edit   func(*Config)
		header []string
		code   codes.Code
		msg    string
	}{
		{name: "no header", code: codes.InvalidArgument, msg: "security header missing from request"},
		{name: "header false", header: []string{"false"}, code: codes.InvalidArgument, msg: "security header missing from request"},
		{name: "header True", header: []string{"True"}, code: codes.InvalidArgument, msg: "security header missing from request"},
		{name: "header twice", header: []string{"true", "true"}, code: codes.InvalidArgument, msg: "security header missing from request"},
		{
			name: "attestor refuses", edit: attestAs(spiffeid.ID{}, errors.New("pid 42 is in pod other/secret-thing")),
			header: []string{"true"}, code: codes.PermissionDenied, msg: msgDenied,
		},
		{
			name: "attestor refuses with a reason", edit: attestAs(spiffeid.ID{}, &DeniedError{Reason: "namespace app is not enrolled: label it kzero.dev/enrolled=true", Cause: errors.New("detail")}),
			header: []string{"true"}, code: codes.PermissionDenied, msg: "namespace app is not enrolled: label it kzero.dev/enrolled=true",
		},
		{
			name: "attestor refuses with a public message", edit: attestAs(spiffeid.ID{}, fmt.Errorf("attest: %w", refusal{})),
			header: []string{"true"}, code: codes.PermissionDenied, msg: "the caller's namespace is not enrolled in kzero",
		},
		{
			name: "ID of another trust domain", edit: attestAs(spiffeid.RequireFromString("spiffe://partner.example/ns/app/sa/web"), nil),
			header: []string{"true"}, code: codes.PermissionDenied, msg: msgDenied,
		},
		{
			name: "ID without a path", edit: attestAs(spiffeid.RequireFromString("spiffe://cluster.local"), nil),
			header: []string{"true"}, code: codes.PermissionDenied, msg: msgDenied,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t, tc.edit)
			c := e.raw(t)
			for name, call := range everyRPC {
				ctx := t.Context()
				for _, v := range tc.header {
					ctx = metadata.AppendToOutgoingContext(ctx, securityHeader, v)
				}
				if err := call(ctx, e, c); err == nil {
					t.Errorf("%s: no error, want %s %q", name, tc.code, tc.msg)
				} else {
					t.Run(name, func(t *testing.T) { wantStatus(t, err, tc.code, tc.msg) })
				}
			}
		})
	}
}

func TestRefusalsOfOneRPC(t *testing.T) {
	unavailable := errors.New("authority unreachable")
	for _, tc := range []struct {
		name  string
		after func(*env)
		call  rpc
		code  codes.Code
		msg   string
	}{
		{
			name: "FetchJWTSVID without audience", call: fetchJWTSVID(&workload.JWTSVIDRequest{}),
			code: codes.InvalidArgument, msg: "audience must be specified",
		},
		{
			name: "FetchJWTSVID with an empty audience", call: fetchJWTSVID(&workload.JWTSVIDRequest{Audience: []string{audience, ""}}),
			code: codes.InvalidArgument, msg: "audience must be specified",
		},
		{
			name: "FetchJWTSVID for 17 audiences", call: fetchJWTSVID(&workload.JWTSVIDRequest{Audience: strings.Split("a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q", ",")}),
			code: codes.InvalidArgument, msg: "17 audiences asked for; a JWT-SVID has at most 16, each of at most 2048 bytes: ask for fewer",
		},
		{
			name: "FetchJWTSVID for an audience of 2049 bytes", call: fetchJWTSVID(&workload.JWTSVIDRequest{Audience: []string{audience, strings.Repeat("a", 2049)}}),
			code: codes.InvalidArgument, msg: "audience[1] is 2049 bytes long; a JWT-SVID has at most 16 audiences, each of at most 2048 bytes: name the audience with a shorter string, such as its URL or SPIFFE ID",
		},
		{
			name: "FetchJWTSVID of a malformed ID", call: fetchJWTSVID(&workload.JWTSVIDRequest{Audience: []string{audience}, SpiffeId: "web"}),
			code: codes.InvalidArgument, msg: `spiffe_id "web" is not a SPIFFE ID: scheme is missing or invalid`,
		},
		{
			name: "FetchJWTSVID of another ID",
			call: fetchJWTSVID(&workload.JWTSVIDRequest{Audience: []string{audience}, SpiffeId: "spiffe://cluster.local/ns/app/sa/db"}),
			code: codes.PermissionDenied,
			msg:  "the calling process may not have spiffe://cluster.local/ns/app/sa/db: it is spiffe://cluster.local/ns/app/sa/web; leave spiffe_id empty to get its own",
		},
		{
			name: "FetchJWTSVID while the authority fails", after: func(e *env) { e.signer.failWith(unavailable) },
			call: fetchJWTSVID(&workload.JWTSVIDRequest{Audience: []string{audience}}),
			code: codes.Unavailable, msg: "the agent cannot get a JWT-SVID from the authority now: retry with backoff",
		},
		{
			name: "FetchX509SVID while the authority fails", after: func(e *env) { e.signer.failWith(unavailable) },
			call: fetchX509SVID, code: codes.Unavailable, msg: "the agent cannot get an X.509-SVID from the authority now: retry with backoff",
		},
		{
			name: "FetchX509SVID without a bundle", after: func(e *env) { e.bundles.Set() }, call: fetchX509SVID,
			code: codes.Unavailable, msg: "the agent has no X.509 trust bundle yet: retry with backoff",
		},
		{
			name: "FetchX509Bundles without a bundle", after: func(e *env) { e.bundles.Set() }, call: fetchX509Bundles,
			code: codes.Unavailable, msg: "the agent has no X.509 trust bundle yet: retry with backoff",
		},
		{
			name: "FetchJWTBundles without a bundle", after: func(e *env) { e.bundles.Set() }, call: fetchJWTBundles,
			code: codes.Unavailable, msg: "the agent has no JWT bundle yet: retry with backoff",
		},
		{
			name: "ValidateJWTSVID without audience", call: validate(&workload.ValidateJWTSVIDRequest{Svid: "x.y.z"}),
			code: codes.InvalidArgument, msg: "audience must be specified",
		},
		{
			name: "ValidateJWTSVID for an audience of 2049 bytes", call: validate(&workload.ValidateJWTSVIDRequest{Svid: "x.y.z", Audience: strings.Repeat("a", 2049)}),
			code: codes.InvalidArgument, msg: "audience is 2049 bytes long; an audience is at most 2048 bytes",
		},
		{
			name: "ValidateJWTSVID without svid", call: validate(&workload.ValidateJWTSVIDRequest{Audience: audience}),
			code: codes.InvalidArgument, msg: "svid must be specified",
		},
		{
			name: "ValidateJWTSVID of garbage", call: validate(&workload.ValidateJWTSVIDRequest{Audience: audience, Svid: "x.y.z"}),
			code: codes.InvalidArgument, msg: "jwtsvid: unable to parse JWT token",
		},
		{
			name: "ValidateJWTSVID for another audience", call: validateIssued("spiffe://cluster.local/ns/app/sa/cache", audience, false),
			code: codes.InvalidArgument, msg: `jwtsvid: expected audience in ["spiffe://cluster.local/ns/app/sa/db"] (audience=["spiffe://cluster.local/ns/app/sa/cache"])`,
		},
		{
			name: "ValidateJWTSVID of an untrusted trust domain", call: validateIssued(audience, audience, true),
			code: codes.InvalidArgument, msg: `jwtsvid: no bundle found for trust domain "partner.example"`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t, nil)
			if tc.after != nil {
				tc.after(e)
			}
			wantStatus(t, tc.call(withHeader(t.Context()), e, e.raw(t)), tc.code, tc.msg)
		})
	}
}

func TestDeniedErrorKeepsItsCauseOutOfTheReason(t *testing.T) {
	cause := errors.New("pid 42: cgroup of pod 1234-abcd")
	for _, tc := range []struct {
		err  *DeniedError
		want string
	}{
		{&DeniedError{Reason: "not in a pod"}, "workloadapi: denied: not in a pod"},
		{&DeniedError{Reason: "not in a pod", Cause: cause}, "workloadapi: denied: not in a pod: pid 42: cgroup of pod 1234-abcd"},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
		if errors.Is(tc.err, cause) != (tc.err.Cause != nil) {
			t.Errorf("%v: errors.Is(cause) is wrong", tc.err)
		}
	}
}
