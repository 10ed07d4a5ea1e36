package policy

import (
	"encoding/json"
	"strconv"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"kzero.dev/kzero/api/v1alpha1"
)

// source is the request's peer, parsed once per decision. ns and sa are set
// only for IDs of the engine's trust domain of the form /ns/<ns>/sa/<sa>.
type source struct {
	id, td, ns, sa string
}

func parseSource(td spiffeid.TrustDomain, id spiffeid.ID) source {
	if id.IsZero() {
		return source{}
	}
	s := source{id: id.String(), td: id.TrustDomain().Name()}
	if id.TrustDomain() != td {
		return s
	}
	rest, ok := strings.CutPrefix(id.Path(), "/ns/")
	if !ok {
		return s
	}
	ns, rest, ok := strings.Cut(rest, "/")
	if !ok {
		return s
	}
	sa, ok := strings.CutPrefix(rest, "sa/")
	if !ok || sa == "" || strings.Contains(sa, "/") {
		return s
	}
	s.ns, s.sa = ns, sa
	return s
}

// match is the best (lowest ordinal) matching rule of one category.
type match struct {
	set     bool
	ordinal int
	ref     RuleRef
	broken  bool
}

func (m *match) offer(ordinal int, ref RuleRef, broken bool) {
	if !m.set || ordinal < m.ordinal {
		*m = match{set: true, ordinal: ordinal, ref: ref, broken: broken}
	}
}

// matches gathers the four categories of a decision.
type matches struct {
	enforceDeny, enforceAllow, auditDeny, auditAllow match
}

// Decide decides r. It does not allocate unless a CEL condition is
// evaluated.
func (e *Engine) Decide(r *Request) Decision {
	mode, enrolled := e.enrollment(r.Destination.Namespace)
	if !enrolled {
		return Decision{Allowed: true, Verdict: Allow, Cause: CauseNotEnrolled}
	}
	src := parseSource(e.td, r.Source)
	var m matches
	if idx := e.namespaces[r.Destination.Namespace]; idx != nil {
		e.scan(idx.all, r, &src, &m)
		if len(idx.bySA) > 0 {
			e.scan(idx.bySA[r.Destination.ServiceAccount], r, &src, &m)
		}
		if len(idx.byLabel) > 0 {
			for k, v := range r.Destination.Labels {
				e.scan(idx.byLabel[labelPair{k, v}], r, &src, &m)
			}
		}
	}
	d := Decision{Mode: mode}
	switch {
	case m.enforceDeny.set:
		d.Verdict, d.By, d.Cause = Deny, m.enforceDeny.ref, causeOf(m.enforceDeny)
	case m.enforceAllow.set:
		d.Verdict, d.By, d.Cause = Allow, m.enforceAllow.ref, CauseRule
		if m.auditDeny.set {
			d.Audit, d.AuditVerdict, d.AuditBy = true, Deny, m.auditDeny.ref
		}
	default:
		d.Verdict, d.Cause = Deny, CauseDefaultDeny
		if m.auditAllow.set && !m.auditDeny.set {
			d.Audit, d.AuditVerdict, d.AuditBy = true, Allow, m.auditAllow.ref
		}
	}
	d.Allowed = d.Verdict == Allow || mode == v1alpha1.ModeAudit
	return d
}

func causeOf(m match) Cause {
	if m.broken {
		return CauseBrokenPolicy
	}
	return CauseRule
}

// scan offers every matching rule of ps to m.
func (e *Engine) scan(ps []*cpolicy, r *Request, src *source, m *matches) {
	for _, p := range ps {
		if m.enforceDeny.set && m.enforceDeny.ordinal < p.ordinal<<16 {
			continue // cannot change the decision
		}
		if !p.selects(&r.Destination) {
			continue
		}
		cat := m.category(p)
		if p.broken {
			cat.offer(p.ordinal<<16, p.ref, true)
			continue
		}
		p.scanRules(p.byPort[r.Port], r, src, cat)
		p.scanRules(p.anyPort, r, src, cat)
	}
}

func (m *matches) category(p *cpolicy) *match {
	switch {
	case p.deny && !p.audit:
		return &m.enforceDeny
	case p.deny:
		return &m.auditDeny
	case !p.audit:
		return &m.enforceAllow
	}
	return &m.auditAllow
}

func (p *cpolicy) scanRules(rules []*crule, r *Request, src *source, cat *match) {
	for _, cr := range rules {
		if cat.set && cat.ordinal <= cr.ordinal {
			return // rules are in order: none after this one can do better
		}
		if cr.matches(r, src, p.deny) {
			cat.offer(cr.ordinal, cr.ref, false)
			return
		}
	}
}

// selects reports whether the policy applies to the workload.
func (p *cpolicy) selects(w *Workload) bool {
	if p.sas != nil {
		if _, ok := p.sas[w.ServiceAccount]; !ok {
			return false
		}
	}
	for k, v := range p.labels {
		if got, ok := w.Labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// matches reports whether a rule matches. failClosed (deny rules) makes
// what cannot be decided match: L7 fields on a request that is not HTTP,
// and conditions that fail to evaluate.
func (cr *crule) matches(r *Request, src *source, failClosed bool) bool {
	// Cheapest first: sources are map lookups, destinations may glob.
	if len(cr.from) > 0 {
		ok := false
		for i := range cr.from {
			if cr.from[i].matches(r, src) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if len(cr.to) > 0 {
		ok := false
		for i := range cr.to {
			if cr.to[i].matches(r, failClosed) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if cr.when != nil {
		ok, err := evalCEL(cr.when, r, src)
		if err != nil {
			return failClosed
		}
		return ok
	}
	return true
}

func (s *csource) matches(r *Request, src *source) bool {
	if s.hasIDs {
		if src.id == "" {
			return false
		}
		_, ok := s.ids[src.id]
		for i := 0; !ok && i < len(s.idGlobs); i++ {
			ok = s.idGlobs[i].match(src.id)
		}
		if !ok {
			return false
		}
	}
	if s.namespaces != nil {
		if _, ok := s.namespaces[src.ns]; !ok || src.ns == "" {
			return false
		}
	}
	if s.sas != nil {
		if _, ok := s.sas[saKey{src.ns, src.sa}]; !ok || src.sa == "" {
			return false
		}
	}
	if s.user != nil && !s.user.matches(r.User) {
		return false
	}
	return true
}

func (u *cuser) matches(user *User) bool {
	if user == nil {
		return false
	}
	if u.issuer != "" && user.Issuer != u.issuer {
		return false
	}
	if u.subjects != nil {
		if _, ok := u.subjects[user.Subject]; !ok {
			return false
		}
	}
	for _, c := range u.claims {
		if !claimHas(user.Claims[c.name], c.value) {
			return false
		}
	}
	return true
}

// claimHas reports whether a claim equals want or is a list holding it.
// Booleans and numbers compare in their JSON form: "true", "3", "2.5".
func claimHas(claim any, want string) bool {
	switch v := claim.(type) {
	case []any:
		for _, x := range v {
			if scalarIs(x, want) {
				return true
			}
		}
		return false
	case []string:
		for _, s := range v {
			if s == want {
				return true
			}
		}
		return false
	}
	return scalarIs(claim, want)
}

func scalarIs(v any, want string) bool {
	switch x := v.(type) {
	case string:
		return x == want
	case bool:
		return strconv.FormatBool(x) == want
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64) == want
	case int:
		return strconv.Itoa(x) == want
	case int64:
		return strconv.FormatInt(x, 10) == want
	case json.Number:
		return x.String() == want
	}
	return false
}

func (d *cdest) matches(r *Request, failClosed bool) bool {
	if len(d.ports) > 0 {
		ok := false
		for _, p := range d.ports {
			if p == r.Port {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if !d.l7 {
		return true
	}
	if !r.HTTP {
		return failClosed
	}
	if len(d.methods) > 0 {
		ok := false
		for _, m := range d.methods {
			if m == r.Method {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if len(d.paths) > 0 {
		if !cleanPath(r.Path) {
			return failClosed
		}
		ok := false
		for i := range d.paths {
			if d.paths[i].matches(r.Path) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if len(d.hosts) > 0 {
		ok := false
		for _, h := range d.hosts {
			if hostMatches(h, r.Host) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func (p *cpath) matches(path string) bool {
	switch p.kind {
	case pathExact:
		return path == p.value
	case pathPrefix:
		if p.value == "" { // prefix "/": everything
			return true
		}
		rest, ok := strings.CutPrefix(path, p.value)
		return ok && (rest == "" || rest[0] == '/')
	case pathGlob:
		return p.glob.match(path)
	}
	return false
}

// cleanPath reports whether p is the normalized path Decide expects:
// absolute, without query or fragment, without empty, "." or ".."
// segments. Path rules fail closed on anything else, so that "/api//admin"
// or "/api/x/../admin" cannot slip past a deny rule.
func cleanPath(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '?', '#':
			return false
		case '/':
			seg := p[i+1:]
			if j := strings.IndexByte(seg, '/'); j >= 0 {
				seg = seg[:j]
			} else if seg == "" {
				continue // a trailing slash
			}
			if seg == "" || seg == "." || seg == ".." {
				return false
			}
		}
	}
	return true
}

// hostMatches: exact, or "*.example.com" for any name below example.com.
func hostMatches(pattern, host string) bool {
	if suffix, ok := strings.CutPrefix(pattern, "*"); ok {
		return len(host) > len(suffix) && strings.HasSuffix(host, suffix)
	}
	return host == pattern
}
