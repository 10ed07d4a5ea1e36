package agentapi_test

import (
	"strings"
	"testing"

	"kzero.dev/kzero/internal/agentapi"
)

func TestAudienceProblem(t *testing.T) {
	for _, tc := range []struct {
		name     string
		audience []string
		want     string
	}{
		{"none", nil, ""},
		{"one", []string{"spiffe://cluster.local/ns/shop/sa/db"}, ""},
		{"at the limits", slicesOf(agentapi.MaxAudiences, strings.Repeat("a", agentapi.MaxAudienceBytes)), ""},
		{"one audience too many", slicesOf(agentapi.MaxAudiences+1, "a"),
			"17 audiences asked for; a JWT-SVID has at most 16, each of at most 2048 bytes: ask for fewer"},
		{"a byte too long", []string{"a", strings.Repeat("a", agentapi.MaxAudienceBytes+1)},
			"audience[1] is 2049 bytes long; a JWT-SVID has at most 16 audiences, each of at most 2048 bytes: name the audience with a shorter string, such as its URL or SPIFFE ID"},
		{"100 KB", []string{strings.Repeat("a", 100_000)},
			"audience[0] is 100000 bytes long; a JWT-SVID has at most 16 audiences, each of at most 2048 bytes: name the audience with a shorter string, such as its URL or SPIFFE ID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := agentapi.AudienceProblem(tc.audience); got != tc.want {
				t.Errorf("AudienceProblem =\n  %q\nwant\n  %q", got, tc.want)
			}
		})
	}
}

func slicesOf(n int, s string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}
