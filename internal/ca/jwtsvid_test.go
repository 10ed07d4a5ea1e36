package ca_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"

	"kzero.dev/kzero/internal/ca"
)

func TestJWTSVID(t *testing.T) {
	clk := newClock(time.Now())
	c := newCA(t, ca.Config{Now: clk.Now})
	id := mustID(t, "spiffe://cluster.local/ns/shop/sa/cart")
	svid, err := c.IssueJWTSVID(ca.JWTRequest{ID: id, Audience: []string{"payments", "audit"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := svid.Expiry.Sub(svid.IssuedAt); got != ca.DefaultJWTSVIDTTL {
		t.Errorf("lifetime = %s, want the default %s", got, ca.DefaultJWTSVIDTTL)
	}
	// go-spiffe, as any peer would, against the published bundle.
	parsed, err := jwtsvid.ParseAndValidate(svid.Token, publishedBundle(t, c), []string{"payments"})
	if err != nil {
		t.Fatalf("go-spiffe jwtsvid.ParseAndValidate: %v", err)
	}
	if parsed.ID != id {
		t.Errorf("sub = %s, want %s", parsed.ID, id)
	}
	for _, claim := range []string{"sub", "aud", "exp", "iat"} {
		if _, ok := parsed.Claims[claim]; !ok {
			t.Errorf("claim %q missing", claim)
		}
	}
	// The CA's own validation.
	got, err := c.ValidateJWTSVID(svid.Token, "audit")
	if err != nil {
		t.Fatalf("ValidateJWTSVID: %v", err)
	}
	if got.ID != id || got.KeyID != svid.KeyID {
		t.Errorf("validated %s by %s, want %s by %s", got.ID, got.KeyID, id, svid.KeyID)
	}

	other := newCA(t, ca.Config{Now: clk.Now})
	foreign, err := other.IssueJWTSVID(ca.JWTRequest{ID: id, Audience: []string{"payments"}})
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(svid.Token, ".")
	tampered := parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))

	for _, tc := range []struct {
		name, token, audience, wantErr string
		kind                           error
		advance                        time.Duration
	}{
		{name: "wrong audience", token: svid.Token, audience: "billing",
			wantErr: `ca: the token is for ["payments" "audit"], not "billing"`, kind: ca.ErrJWTAudience},
		{name: "no audience", token: svid.Token,
			wantErr: "ca: validation needs the audience to expect", kind: ca.ErrNoAudience},
		{name: "too large to parse", token: svid.Token + strings.Repeat("A", 64<<10), audience: "payments",
			wantErr: fmt.Sprintf("ca: the token is %d bytes, over the 65536 a JWT-SVID may be: it was not parsed", len(svid.Token)+64<<10), kind: ca.ErrJWTInvalid},
		{name: "not a JWT", token: "hello", audience: "payments",
			wantErr: "ca: the token does not parse as a signed JWT: go-jose/go-jose: compact JWS format must have three parts", kind: ca.ErrJWTInvalid},
		{name: "signature tampered", token: tampered, audience: "payments",
			wantErr: "ca: the token's signature does not verify: go-jose/go-jose: error in cryptographic primitive", kind: ca.ErrJWTInvalid},
		{name: "key of another CA", token: foreign.Token, audience: "payments",
			wantErr: `ca: the token's key "` + foreign.KeyID + `" is not in the bundle of "cluster.local": it was signed by another CA, or long ago`, kind: ca.ErrJWTInvalid},
		{name: "expired", token: svid.Token, audience: "payments", advance: ca.DefaultJWTSVIDTTL + 2*time.Minute,
			wantErr: "ca: the token expired at " + svid.Expiry.UTC().Format(time.RFC3339) + ": fetch a new one", kind: ca.ErrJWTExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk.Add(tc.advance)
			defer clk.Add(-tc.advance)
			_, err := c.ValidateJWTSVID(tc.token, tc.audience)
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("error =\n  %v\nwant\n  %s", err, tc.wantErr)
			}
			if !errorIs(err, tc.kind) {
				t.Errorf("errors.Is(err, %v) = false", tc.kind)
			}
		})
	}
}

func TestIssueJWTSVIDRefusals(t *testing.T) {
	c := newCA(t, ca.Config{})
	id := mustID(t, "spiffe://cluster.local/ns/shop/sa/cart")
	for _, tc := range []struct {
		name    string
		req     ca.JWTRequest
		wantErr string
		kind    error
	}{
		{"no audience", ca.JWTRequest{ID: id}, "ca: a JWT-SVID needs at least one non-empty audience: name the service that will accept it", ca.ErrNoAudience},
		{"empty audience", ca.JWTRequest{ID: id, Audience: []string{""}}, "ca: a JWT-SVID needs at least one non-empty audience: name the service that will accept it", ca.ErrNoAudience},
		{"17 audiences", ca.JWTRequest{ID: id, Audience: strings.Split("a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q", ",")},
			"ca: 17 audiences asked for; a JWT-SVID has at most 16, each of at most 2048 bytes: ask for fewer", ca.ErrAudienceLimit},
		{"a 100 KB audience", ca.JWTRequest{ID: id, Audience: []string{"x", strings.Repeat("a", 100_000)}},
			"ca: audience[1] is 100000 bytes long; a JWT-SVID has at most 16 audiences, each of at most 2048 bytes: name the audience with a shorter string, such as its URL or SPIFFE ID", ca.ErrAudienceLimit},
		{"TTL over the maximum", ca.JWTRequest{ID: id, Audience: []string{"x"}, TTL: 2 * time.Hour}, "ca: TTL 2h0m0s is over the maximum 1h0m0s: ask for 1h0m0s or less", ca.ErrTTLTooLong},
		{"foreign ID", ca.JWTRequest{ID: mustID(t, "spiffe://other.org/x"), Audience: []string{"x"}},
			`ca: spiffe://other.org/x is outside trust domain "cluster.local": this CA certifies only spiffe://cluster.local/... IDs`, ca.ErrForeignTrustDomain},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.IssueJWTSVID(tc.req)
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("error =\n  %v\nwant\n  %s", err, tc.wantErr)
			}
			if !errorIs(err, tc.kind) {
				t.Errorf("errors.Is(err, %v) = false", tc.kind)
			}
		})
	}
}

// aud is a JSON array even for one audience, as SPIRE sends it: go-jose's
// jwt.Audience would write a string, which clients that expect an array
// fail on. go-spiffe and the CA's own validation read both forms (the
// string form: TestValidateJWTSVIDReadsAudAsAString).
func TestJWTSVIDAudIsAlwaysAnArray(t *testing.T) {
	c := newCA(t, ca.Config{})
	id := mustID(t, "spiffe://cluster.local/ns/shop/sa/cart")
	for _, aud := range [][]string{{"payments"}, {"payments", "audit"}} {
		svid, err := c.IssueJWTSVID(ca.JWTRequest{ID: id, Audience: aud})
		if err != nil {
			t.Fatal(err)
		}
		payload, err := base64.RawURLEncoding.DecodeString(strings.Split(svid.Token, ".")[1])
		if err != nil {
			t.Fatal(err)
		}
		var claims map[string]json.RawMessage
		if err := json.Unmarshal(payload, &claims); err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal(aud)
		if string(claims["aud"]) != string(want) {
			t.Errorf("aud = %s, want %s (payload %s)", claims["aud"], want, payload)
		}
		if _, err := jwtsvid.ParseAndValidate(svid.Token, publishedBundle(t, c), aud[:1]); err != nil {
			t.Errorf("go-spiffe: %v", err)
		}
		if _, err := c.ValidateJWTSVID(svid.Token, aud[0]); err != nil {
			t.Errorf("ValidateJWTSVID: %v", err)
		}
	}
}
