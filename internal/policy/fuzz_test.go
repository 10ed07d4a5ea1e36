package policy

import (
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// FuzzGlob: the automaton agrees with a backtracking matcher on every
// pattern it accepts.
func FuzzGlob(f *testing.F) {
	f.Fuzz(func(t *testing.T, pattern, s string) {
		if len(pattern) > 40 || len(s) > 64 {
			return // keep the backtracking reference fast
		}
		g, err := compileGlob(pattern)
		if err != nil {
			return
		}
		if got, want := g.match(s), backtrack(pattern, s); got != want {
			t.Fatalf("glob %q on %q = %v, backtracking says %v", pattern, s, got, want)
		}
	})
}

func backtrack(p, s string) bool {
	switch {
	case p == "":
		return s == ""
	case strings.HasPrefix(p, "**"):
		rest := strings.TrimLeft(p, "*")
		for i := 0; i <= len(s); i++ {
			if backtrack(rest, s[i:]) {
				return true
			}
		}
		return false
	case p[0] == '*':
		for i := 0; i <= len(s); i++ {
			if backtrack(p[1:], s[i:]) {
				return true
			}
			if i < len(s) && s[i] == '/' {
				break
			}
		}
		return false
	}
	return s != "" && s[0] == p[0] && backtrack(p[1:], s[1:])
}

// FuzzParseAndCompile: any file is parsed or refused, whatever parses is
// compiled (or refused) and decided on, without a panic.
func FuzzParseAndCompile(f *testing.F) {
	td := spiffeid.RequireTrustDomainFromString("cluster.local")
	req := &Request{
		Source:      spiffeid.RequireFromString("spiffe://cluster.local/ns/web/sa/frontend"),
		Destination: Workload{Namespace: "shop", ServiceAccount: "cart", Labels: map[string]string{"app": "cart"}},
		Port:        8080, HTTP: true, Method: "GET", Path: "/api/items", Host: "cart.shop.svc",
		Headers: map[string]string{"x-env": "prod"},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ps, err := Parse(data)
		if err != nil {
			return
		}
		e, _ := Compile(ps, Options{TrustDomain: td})
		for i := range ps {
			ps[i].Namespace = "shop"
		}
		e.Decide(req)
		e2, _ := Compile(ps, Options{TrustDomain: td})
		e2.Decide(req)
	})
}
