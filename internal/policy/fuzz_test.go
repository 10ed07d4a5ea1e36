package policy

import (
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

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
