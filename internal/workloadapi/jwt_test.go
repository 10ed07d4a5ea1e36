package workloadapi

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"google.golang.org/grpc/codes"

	"kzero.dev/kzero/internal/agentapi"
)

const audience = "spiffe://cluster.local/ns/app/sa/db"

func TestJWTSVIDValidatesThroughTheAPIAndAgainstItsBundles(t *testing.T) {
	e := start(t, nil)
	c := e.client(t)
	svid, err := c.FetchJWTSVID(t.Context(), jwtsvid.Params{Audience: audience, ExtraAudiences: []string{"other"}})
	if err != nil {
		t.Fatal(err)
	}
	if svid.ID != webID || !slices.Equal(svid.Audience, []string{audience, "other"}) {
		t.Fatalf("JWT-SVID for %s, %q; want %s, [%s other]", svid.ID, svid.Audience, webID, audience)
	}
	token := svid.Marshal()

	// Through the API, as go-spiffe's client does it...
	validated, err := c.ValidateJWTSVID(t.Context(), token, audience)
	if err != nil || validated.ID != webID {
		t.Fatalf("ValidateJWTSVID: %v, %v", validated, err)
	}
	// ...with the claims, as the standard asks.
	resp, err := e.raw(t).ValidateJWTSVID(withHeader(t.Context()), &workload.ValidateJWTSVIDRequest{Svid: token, Audience: "other"})
	if err != nil {
		t.Fatal(err)
	}
	claims := resp.GetClaims().AsMap()
	if resp.GetSpiffeId() != webID.String() || claims["sub"] != webID.String() {
		t.Fatalf("validated %q with sub %v, want %s", resp.GetSpiffeId(), claims["sub"], webID)
	}
	if aud, _ := claims["aud"].([]any); !slices.Equal(aud, []any{audience, "other"}) {
		t.Fatalf("aud claim %v", claims["aud"])
	}
	if _, ok := claims["exp"].(float64); !ok {
		t.Fatalf("exp claim %v, want a number", claims["exp"])
	}

	// Against the JWT bundles the API serves, by go-spiffe's jwtsvid.
	bundles, err := c.FetchJWTBundles(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jwtsvid.ParseAndValidate(token, bundles, []string{audience}); err != nil {
		t.Fatalf("jwtsvid.ParseAndValidate against the served JWT bundles: %v", err)
	}

	// Asking for its own ID by name is allowed.
	if _, err := c.FetchJWTSVID(t.Context(), jwtsvid.Params{Audience: audience, Subject: webID}); err != nil {
		t.Fatalf("FetchJWTSVID of the caller's own ID: %v", err)
	}
	if n := e.signer.jwt.Load(); n != 2 {
		t.Fatalf("%d JWT signatures, want 2", n)
	}
}

func TestFetchJWTBundlesStreamsEveryChange(t *testing.T) {
	e := start(t, nil)
	stream, err := e.raw(t).FetchJWTBundles(withHeader(t.Context()), &workload.JWTBundlesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	partner := newCA(t, partnerTD, e.clock.Now)
	for i, set := range [][]string{{td.IDString()}, {td.IDString(), partnerTD.IDString()}} {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		var got []string
		for id, doc := range resp.GetBundles() {
			b, err := jwtbundle.Parse(spiffeid.RequireTrustDomainFromString(id), doc)
			if err != nil || b.Empty() {
				t.Fatalf("message %d: JWT bundle of %s: %v", i, id, err)
			}
			got = append(got, id)
		}
		slices.Sort(got)
		if !slices.Equal(got, set) {
			t.Fatalf("message %d: JWT bundles of %v, want %v", i, got, set)
		}
		if i == 0 {
			if err := e.bundles.Set(e.ca.Bundle(), partner.Bundle()); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// A 100 KB audience is the client's mistake, said as such: InvalidArgument
// with the limits, from go-spiffe's client (which does not retry it), and
// the authority is never asked. (It was Unavailable, "retry", when the
// authority's 413 came back.)
func TestAnAudienceOverTheLimitsIsInvalid(t *testing.T) {
	e := start(t, nil)
	c := e.client(t)
	_, err := c.FetchJWTSVID(t.Context(), jwtsvid.Params{Audience: strings.Repeat("a", 100_000)})
	wantStatus(t, err, codes.InvalidArgument, "audience[0] is 100000 bytes long; a JWT-SVID has at most 16 audiences, each of at most 2048 bytes: name the audience with a shorter string, such as its URL or SPIFFE ID")
	_, err = c.ValidateJWTSVID(t.Context(), "x.y.z", strings.Repeat("a", 100_000))
	wantStatus(t, err, codes.InvalidArgument, "audience is 100000 bytes long; an audience is at most 2048 bytes")
	if n := e.signer.jwt.Load(); n != 0 {
		t.Errorf("%d JWT signatures asked of the authority, want none", n)
	}
}

// A caller chooses its audience: the log shows a bounded part of it.
func TestAudienceIsCutInTheLog(t *testing.T) {
	logs := &lockedBuffer{}
	e := start(t, func(c *Config) { c.Log = slog.New(slog.NewJSONHandler(logs, nil)) })
	e.signer.failWith(errors.New("authority unreachable"))
	aud := make([]string, agentapi.MaxAudiences)
	for i := range aud {
		aud[i] = fmt.Sprintf("%02d", i) + strings.Repeat("a", agentapi.MaxAudienceBytes-2)
	}
	_, err := e.raw(t).FetchJWTSVID(withHeader(t.Context()), &workload.JWTSVIDRequest{Audience: aud})
	wantStatus(t, err, codes.Unavailable, "the agent cannot get a JWT-SVID from the authority now: retry with backoff")
	out := logs.String()
	want := `"audience":"[\"00` + strings.Repeat("a", 62) + `…(2048 bytes)\" \"01`
	if !strings.Contains(out, want) || !strings.Contains(out, `…(16 values)]"`) || strings.Contains(out, `\"04`) {
		t.Errorf("the log does not show the audience cut to 4 values of 64 bytes:\n%s", out)
	}
	if len(out) > 1024 {
		t.Errorf("the log of a refused JWT-SVID is %d bytes, for %d bytes of audience", len(out), agentapi.MaxAudiences*agentapi.MaxAudienceBytes)
	}
}
