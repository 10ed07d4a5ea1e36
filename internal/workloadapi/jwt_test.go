package workloadapi

import (
	"slices"
	"testing"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
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
