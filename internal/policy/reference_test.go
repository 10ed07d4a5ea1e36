package policy_test

import (
	"fmt"
	"math/rand/v2"
	"path"
	"sort"
	"strings"
	"testing"

	"github.com/google/cel-go/cel"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kzero.dev/kzero/api/v1alpha1"
	"kzero.dev/kzero/internal/policy"
)

// reference decides a request the slow, obvious way, straight from the
// policy objects: every policy, every rule, in order. It shares no code
// with the engine but the types.
func reference(t *testing.T, ps []v1alpha1.AccessPolicy, r *policy.Request) (verdict policy.Verdict, by string, audit bool, auditVerdict policy.Verdict, auditBy string) {
	sorted := append([]v1alpha1.AccessPolicy(nil), ps...)
	sort.SliceStable(sorted, func(i, j int) bool {
		return sorted[i].Namespace+"/"+sorted[i].Name < sorted[j].Namespace+"/"+sorted[j].Name
	})
	first := map[string]string{} // category -> rule
	for _, p := range sorted {
		if p.Namespace != r.Destination.Namespace || !refSelects(p.Spec.Selector, r.Destination) {
			continue
		}
		deny := p.Spec.Action == v1alpha1.ActionDeny
		cat := map[[2]bool]string{{true, false}: "ed", {false, false}: "ea", {true, true}: "ad", {false, true}: "aa"}[[2]bool{deny, p.Spec.Mode == v1alpha1.ModeAudit}]
		if _, done := first[cat]; done {
			continue
		}
		for i, rule := range p.Spec.Rules {
			if refRule(t, rule, r, deny, p.Namespace) {
				name := rule.Name
				if name == "" {
					name = fmt.Sprintf("rules[%d]", i)
				}
				first[cat] = p.Namespace + "/" + p.Name + " rule " + name
				break
			}
		}
	}
	switch {
	case first["ed"] != "":
		return policy.Deny, first["ed"], false, false, ""
	case first["ea"] != "":
		if first["ad"] != "" {
			return policy.Allow, first["ea"], true, policy.Deny, first["ad"]
		}
		return policy.Allow, first["ea"], false, false, ""
	case first["aa"] != "" && first["ad"] == "":
		return policy.Deny, "", true, policy.Allow, first["aa"]
	}
	return policy.Deny, "", false, false, ""
}

func refSelects(s v1alpha1.WorkloadSelector, w policy.Workload) bool {
	for k, v := range s.MatchLabels {
		if w.Labels[k] != v {
			return false
		}
	}
	if len(s.ServiceAccounts) == 0 {
		return true
	}
	for _, sa := range s.ServiceAccounts {
		if sa == w.ServiceAccount {
			return true
		}
	}
	return false
}

func refRule(t *testing.T, rule v1alpha1.Rule, r *policy.Request, deny bool, policyNS string) bool {
	if len(rule.To) > 0 && !anyOf(len(rule.To), func(i int) bool { return refDest(rule.To[i], r, deny) }) {
		return false
	}
	if len(rule.From) > 0 && !anyOf(len(rule.From), func(i int) bool { return refSource(rule.From[i], r, policyNS) }) {
		return false
	}
	if rule.When != "" {
		ok, err := refCEL(t, rule.When, r)
		if err != nil {
			return deny
		}
		return ok
	}
	return true
}

func anyOf(n int, f func(int) bool) bool {
	for i := 0; i < n; i++ {
		if f(i) {
			return true
		}
	}
	return false
}

// refIdentity splits spiffe://cluster.local/ns/<ns>/sa/<sa>.
func refIdentity(r *policy.Request) (ns, sa string) {
	parts := strings.Split(strings.TrimPrefix(r.Source.String(), "spiffe://cluster.local/"), "/")
	if !strings.HasPrefix(r.Source.String(), "spiffe://cluster.local/") || len(parts) != 4 || parts[0] != "ns" || parts[2] != "sa" {
		return "", ""
	}
	return parts[1], parts[3]
}

func refSource(s v1alpha1.Source, r *policy.Request, policyNS string) bool {
	ns, sa := refIdentity(r)
	if len(s.SPIFFEIDs) > 0 && !anyOf(len(s.SPIFFEIDs), func(i int) bool { return refGlob(s.SPIFFEIDs[i], r.Source.String()) }) {
		return false
	}
	if len(s.Namespaces) > 0 && (ns == "" || !anyOf(len(s.Namespaces), func(i int) bool { return s.Namespaces[i] == ns })) {
		return false
	}
	if len(s.ServiceAccounts) > 0 && (sa == "" || !anyOf(len(s.ServiceAccounts), func(i int) bool {
		want := s.ServiceAccounts[i]
		if !strings.Contains(want, "/") {
			want = policyNS + "/" + want
		}
		return want == ns+"/"+sa
	})) {
		return false
	}
	if u := s.User; u != nil {
		if r.User == nil || u.Issuer != "" && u.Issuer != r.User.Issuer {
			return false
		}
		if len(u.Subjects) > 0 && !anyOf(len(u.Subjects), func(i int) bool { return u.Subjects[i] == r.User.Subject }) {
			return false
		}
		for k, v := range u.Claims {
			switch c := r.User.Claims[k].(type) {
			case []any:
				if !anyOf(len(c), func(i int) bool { return fmt.Sprint(c[i]) == v }) {
					return false
				}
			case nil:
				return false
			default:
				if fmt.Sprint(c) != v {
					return false
				}
			}
		}
	}
	return true
}

func refDest(d v1alpha1.Destination, r *policy.Request, deny bool) bool {
	if len(d.Ports) > 0 && !anyOf(len(d.Ports), func(i int) bool { return d.Ports[i] == r.Port }) {
		return false
	}
	if len(d.Methods)+len(d.Paths)+len(d.Hosts) == 0 {
		return true
	}
	if !r.HTTP {
		return deny
	}
	if len(d.Methods) > 0 && !anyOf(len(d.Methods), func(i int) bool { return d.Methods[i] == r.Method }) {
		return false
	}
	if len(d.Paths) > 0 && (!strings.HasPrefix(r.Path, "/") || strings.ContainsAny(r.Path, "?#") || path.Clean(r.Path) != strings.TrimSuffix(r.Path, "/") && path.Clean(r.Path) != r.Path) {
		return deny // not a normalized path: fail closed
	}
	if len(d.Paths) > 0 && !anyOf(len(d.Paths), func(i int) bool {
		p := d.Paths[i]
		switch {
		case p.Exact != "":
			return r.Path == p.Exact
		case p.Prefix != "":
			pre := strings.TrimSuffix(p.Prefix, "/")
			return r.Path == pre || strings.HasPrefix(r.Path, pre+"/")
		}
		return refGlob(p.Glob, r.Path)
	}) {
		return false
	}
	if len(d.Hosts) > 0 && !anyOf(len(d.Hosts), func(i int) bool {
		h := d.Hosts[i]
		if strings.HasPrefix(h, "*.") {
			return strings.HasSuffix(r.Host, h[1:]) && len(r.Host) > len(h)-1
		}
		return h == r.Host
	}) {
		return false
	}
	return true
}

// FuzzGlob: the engine's glob automaton agrees with refGlob on every
// pattern it accepts.
func FuzzGlob(f *testing.F) {
	f.Fuzz(func(t *testing.T, pattern, s string) {
		if len(pattern) > 40 || len(s) > 64 {
			return // keep the backtracking reference fast
		}
		got, err := policy.MatchGlob(pattern, s)
		if err != nil {
			return
		}
		if want := refGlob(pattern, s); got != want {
			t.Fatalf("glob %q on %q = %v, backtracking says %v", pattern, s, got, want)
		}
	})
}

// refGlob matches by backtracking over the pattern: a different algorithm
// from the engine's automaton.
func refGlob(p, s string) bool {
	switch {
	case p == "":
		return s == ""
	case strings.HasPrefix(p, "**"):
		rest := strings.TrimLeft(p, "*")
		for i := 0; i <= len(s); i++ {
			if refGlob(rest, s[i:]) {
				return true
			}
		}
		return false
	case p[0] == '*':
		for i := 0; i <= len(s); i++ {
			if refGlob(p[1:], s[i:]) {
				return true
			}
			if i < len(s) && s[i] == '/' {
				break
			}
		}
		return false
	}
	return s != "" && s[0] == p[0] && refGlob(p[1:], s[1:])
}

var refEnv, _ = cel.NewEnv(
	cel.Variable("source", cel.MapType(cel.StringType, cel.StringType)),
	cel.Variable("destination", cel.MapType(cel.StringType, cel.DynType)),
	cel.Variable("request", cel.MapType(cel.StringType, cel.DynType)),
	cel.Variable("user", cel.MapType(cel.StringType, cel.DynType)),
)

func refCEL(t *testing.T, expr string, r *policy.Request) (bool, error) {
	ast, iss := refEnv.Compile(expr)
	if iss.Err() != nil {
		t.Fatalf("reference cannot compile %q: %v", expr, iss.Err())
	}
	prg, err := refEnv.Program(ast)
	if err != nil {
		t.Fatal(err)
	}
	ns, sa := refIdentity(r)
	headers := r.Headers
	if headers == nil {
		headers = map[string]string{}
	}
	user := map[string]any{"issuer": "", "subject": "", "claims": map[string]any{}}
	if r.User != nil {
		user = map[string]any{"issuer": r.User.Issuer, "subject": r.User.Subject, "claims": r.User.Claims}
	}
	request := map[string]any{"port": int64(r.Port), "http": r.HTTP}
	if r.HTTP { // without HTTP, reading these is an error
		request["method"], request["path"], request["host"], request["headers"] = r.Method, r.Path, r.Host, headers
	}
	out, _, err := prg.Eval(map[string]any{
		"source":      map[string]string{"spiffeID": r.Source.String(), "trustDomain": r.Source.TrustDomain().Name(), "namespace": ns, "serviceAccount": sa},
		"destination": map[string]any{"namespace": r.Destination.Namespace, "serviceAccount": r.Destination.ServiceAccount, "labels": r.Destination.Labels},
		"request":     request,
		"user":        user,
	})
	if err != nil {
		return false, err
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, fmt.Errorf("not a bool")
	}
	return b, nil
}

// TestEngineMatchesReference: for random policy sets and requests, the
// compiled engine decides exactly as the reference.
func TestEngineMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(42, 4242))
	const sets, requests = 300, 200
	decisions := map[string]int{}
	for set := 0; set < sets; set++ {
		ps := randomPolicies(rng)
		e, err := policy.Compile(ps, policy.Options{TrustDomain: td})
		if err != nil {
			t.Fatalf("set %d: random policies must compile: %v", set, err)
		}
		for i := 0; i < requests; i++ {
			r := randomRequest(rng)
			d := e.Decide(&r)
			v, by, audit, av, aby := reference(t, ps, &r)
			gotBy, gotABy := "", ""
			if !d.By.IsZero() {
				gotBy = d.By.String()
			}
			if d.Audit {
				gotABy = d.AuditBy.String()
			}
			if d.Verdict != v || gotBy != by || d.Audit != audit || d.Audit && (d.AuditVerdict != av || gotABy != aby) {
				t.Fatalf("set %d request %d: engine %v by %q (audit %v %v by %q), reference %v by %q (audit %v %v by %q)\nrequest %+v\npolicies %s",
					set, i, d.Verdict, gotBy, d.Audit, d.AuditVerdict, gotABy, v, by, audit, av, aby, r, dump(ps))
			}
			decisions[d.Verdict.String()+fmt.Sprint(d.Audit)]++
		}
	}
	t.Logf("%d decisions: %v", sets*requests, decisions)
}

var (
	namespaces = []string{"shop", "web"}
	sas        = []string{"cart", "frontend", "admin"}
	ports      = []int32{80, 443, 8080}
	methods    = []string{"GET", "POST"}
	paths      = []string{"/", "/api", "/api/items", "/api/items/7", "/api/admin/x", "/healthz", "/apix"}
	oddPaths   = []string{"/api//admin/x", "/api/x/../admin", "/api/admin?x=1", "/api/items/", "api"}
	conditions = []string{
		`request.method == "GET"`,
		`source.namespace == "web"`,
		`request.headers["x-env"] == "prod"`, // errors when the header is missing
		`request.port > 100 && request.http`,
		`"admins" in user.claims`,
		`destination.labels["tier"] == "backend"`,
	}
)

func pick[T any](rng *rand.Rand, xs []T) T { return xs[rng.IntN(len(xs))] }

func some[T any](rng *rand.Rand, xs []T) []T {
	var out []T
	for _, x := range xs {
		if rng.IntN(3) == 0 {
			out = append(out, x)
		}
	}
	return out
}

func randomPolicies(rng *rand.Rand) []v1alpha1.AccessPolicy {
	var ps []v1alpha1.AccessPolicy
	for i, n := 0, 1+rng.IntN(6); i < n; i++ {
		spec := v1alpha1.AccessPolicySpec{}
		if rng.IntN(3) == 0 {
			spec.Action = v1alpha1.ActionDeny
		}
		if rng.IntN(4) == 0 {
			spec.Mode = v1alpha1.ModeAudit
		}
		if rng.IntN(2) == 0 {
			spec.Selector.ServiceAccounts = some(rng, sas)
		}
		if rng.IntN(2) == 0 {
			spec.Selector.MatchLabels = map[string]string{"app": pick(rng, sas)}
			if rng.IntN(2) == 0 {
				spec.Selector.MatchLabels["tier"] = pick(rng, []string{"backend", "edge"})
			}
		}
		for j, m := 0, 1+rng.IntN(3); j < m; j++ {
			spec.Rules = append(spec.Rules, randomRule(rng, j))
		}
		ps = append(ps, v1alpha1.AccessPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: pick(rng, namespaces), Name: fmt.Sprintf("p%d", i)}, Spec: spec})
	}
	return ps
}

func randomRule(rng *rand.Rand, j int) v1alpha1.Rule {
	r := v1alpha1.Rule{}
	if rng.IntN(2) == 0 {
		r.Name = fmt.Sprintf("r%d", j)
	}
	for k, n := 0, rng.IntN(3); k < n; k++ {
		s := v1alpha1.Source{}
		switch rng.IntN(5) {
		case 0:
			s.SPIFFEIDs = []string{pick(rng, []string{"spiffe://cluster.local/ns/web/sa/frontend", "spiffe://cluster.local/ns/*/sa/admin", "spiffe://cluster.local/ns/web/**", "spiffe://other.org/ns/web/sa/frontend"})}
		case 1:
			s.Namespaces = some(rng, namespaces)
		case 2:
			s.ServiceAccounts = []string{pick(rng, []string{"frontend", "web/frontend", "shop/admin"})}
		case 3:
			s.User = &v1alpha1.UserMatch{Issuer: pick(rng, []string{"", "https://idp"}), Claims: map[string]string{"groups": pick(rng, []string{"admins", "dev"})}}
			if rng.IntN(3) == 0 {
				s.User.Claims = map[string]string{"suspended": pick(rng, []string{"true", "false"}), "level": "3"}
			}
		}
		if len(s.SPIFFEIDs)+len(s.Namespaces)+len(s.ServiceAccounts) == 0 && s.User == nil {
			s.Namespaces = []string{pick(rng, namespaces)}
		}
		r.From = append(r.From, s)
	}
	for k, n := 0, rng.IntN(3); k < n; k++ {
		d := v1alpha1.Destination{Ports: some(rng, ports), Methods: some(rng, methods)}
		switch rng.IntN(4) {
		case 0:
			d.Paths = []v1alpha1.PathMatch{{Exact: pick(rng, paths)}}
		case 1:
			d.Paths = []v1alpha1.PathMatch{{Prefix: pick(rng, []string{"/api", "/api/", "/"})}}
		case 2:
			d.Paths = []v1alpha1.PathMatch{{Glob: pick(rng, []string{"/api/*", "/api/**", "/*/items/*", "/**/x", "/api*"})}}
		}
		if rng.IntN(4) == 0 {
			d.Hosts = []string{pick(rng, []string{"cart.shop.svc", "*.shop.svc", "*.svc"})}
		}
		if len(d.Ports)+len(d.Methods)+len(d.Paths)+len(d.Hosts) == 0 {
			d.Ports = []int32{pick(rng, ports)}
		}
		r.To = append(r.To, d)
	}
	if rng.IntN(4) == 0 {
		r.When = pick(rng, conditions)
	}
	return r
}

func randomRequest(rng *rand.Rand) policy.Request {
	src := pick(rng, []string{
		"spiffe://cluster.local/ns/web/sa/frontend", "spiffe://cluster.local/ns/shop/sa/admin",
		"spiffe://cluster.local/ns/web/sa/admin", "spiffe://other.org/ns/web/sa/frontend", "spiffe://cluster.local/gateway",
	})
	sa := pick(rng, sas)
	r := policy.Request{
		Source:      id(src),
		Destination: policy.Workload{Namespace: pick(rng, namespaces), ServiceAccount: sa, Labels: map[string]string{"app": pick(rng, sas), "tier": pick(rng, []string{"backend", "edge"})}},
		Port:        pick(rng, ports), HTTP: rng.IntN(4) != 0,
		Method: pick(rng, methods), Path: pick(rng, append(paths, oddPaths[rng.IntN(len(oddPaths))])), Host: pick(rng, []string{"cart.shop.svc", "x.cart.shop.svc", "shop.svc"}),
	}
	if rng.IntN(2) == 0 {
		r.Headers = map[string]string{"x-env": pick(rng, []string{"prod", "dev"})}
	}
	if rng.IntN(3) == 0 {
		r.User = &policy.User{Issuer: pick(rng, []string{"https://idp", "https://evil"}), Subject: "ann",
			Claims: map[string]any{"groups": pick(rng, []any{"admins", []any{"dev", "admins"}, []any{"dev"}}),
				"suspended": pick(rng, []any{true, false}), "level": pick(rng, []any{3.0, 2.5, "3"})}}
	}
	return r
}

func dump(ps []v1alpha1.AccessPolicy) string {
	var b strings.Builder
	for _, p := range ps {
		fmt.Fprintf(&b, "\n  %s/%s %+v", p.Namespace, p.Name, p.Spec)
	}
	return b.String()
}
