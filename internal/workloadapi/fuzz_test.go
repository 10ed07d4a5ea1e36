package workloadapi

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
)

// FuzzCheckJWTSVID: whatever the Signer answers, checkJWTSVID refuses it
// or accepts it without a panic, and accepts only a token for the ID and
// the audience asked that has not expired, kept until before its exp.
func FuzzCheckJWTSVID(f *testing.F) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	f.Add("x.y.z", audience)
	f.Fuzz(func(t *testing.T, token, aud string) {
		renewAt, err := checkJWTSVID(token, webID, []string{aud}, now)
		if err != nil {
			return
		}
		tok, perr := jwt.ParseSigned(token, jwtAlgorithms)
		if perr != nil {
			t.Fatalf("accepted a token that does not parse: %v", perr)
		}
		var claims jwt.Claims
		if err := tok.UnsafeClaimsWithoutVerification(&claims); err != nil {
			t.Fatal(err)
		}
		if claims.Subject != webID.String() || !slices.Contains(claims.Audience, aud) || !now.Before(claims.Expiry.Time()) {
			t.Fatalf("accepted sub %q aud %q exp %v for %s, %q at %v", claims.Subject, claims.Audience, claims.Expiry, webID, aud, now)
		}
		if renewAt.After(claims.Expiry.Time()) {
			t.Fatalf("kept until %v, after its exp %v", renewAt, claims.Expiry.Time())
		}
	})
}

// FuzzAudienceKey: two audience lists make the same key exactly when they
// hold the same values.
func FuzzAudienceKey(f *testing.F) {
	f.Add("a\x00b", "b\x00a")
	f.Add("1:a", "1\x00a")
	f.Fuzz(func(t *testing.T, a, b string) {
		as, bs := strings.Split(a, "\x00"), strings.Split(b, "\x00")
		same := slices.Equal(slices.Sorted(slices.Values(unique(as))), slices.Sorted(slices.Values(unique(bs))))
		if (audienceKey(unique(as)) == audienceKey(unique(bs))) != same {
			t.Fatalf("%q and %q: same set %v, but keys %q and %q", as, bs, same, audienceKey(unique(as)), audienceKey(unique(bs)))
		}
	})
}
