package policy

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/google/cel-go/cel"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"k8s.io/apimachinery/pkg/util/validation"

	"kzero.dev/kzero/api/v1alpha1"
)

// Options configure Compile.
type Options struct {
	// TrustDomain of the cluster: namespace and service account matches
	// apply only to peers of this trust domain. Required.
	TrustDomain spiffeid.TrustDomain
	// Enrollment says whether a namespace is enrolled and in which mode.
	// Nil means every namespace is enrolled in enforce mode.
	Enrollment func(namespace string) (v1alpha1.Mode, bool)
}

// Engine decides requests with compiled policies. It is immutable and safe
// for concurrent use; compile a new one when policies change.
type Engine struct {
	td         spiffeid.TrustDomain
	namespaces map[string]*nsIndex
	enrollment func(string) (v1alpha1.Mode, bool)
	problems   []*PolicyError
	rules      int
}

// nsIndex holds the policies of one namespace, each in exactly one place.
type nsIndex struct {
	all     []*cpolicy               // select every workload (or a broken selector)
	bySA    map[string][]*cpolicy    // selectors naming service accounts
	byLabel map[labelPair][]*cpolicy // label-only selectors, by their first label
}

type labelPair struct{ k, v string }

// cpolicy is a compiled policy.
type cpolicy struct {
	ref     RuleRef
	ordinal int
	deny    bool
	audit   bool
	broken  bool // a deny policy that did not compile: denies all it selects
	labels  map[string]string
	sas     map[string]struct{}
	byPort  map[int32][]*crule
	anyPort []*crule
}

// crule is a compiled rule.
type crule struct {
	ref     RuleRef
	ordinal int
	from    []csource
	to      []cdest
	when    cel.Program
}

type csource struct {
	ids        map[string]struct{}
	idGlobs    []*glob
	hasIDs     bool
	namespaces map[string]struct{}
	sas        map[saKey]struct{}
	user       *cuser
}

type saKey struct{ ns, sa string }

type cuser struct {
	issuer   string
	subjects map[string]struct{}
	claims   []claimMatch
}

type claimMatch struct{ name, value string }

type cdest struct {
	ports   []int32
	methods []string
	paths   []cpath
	hosts   []string // exact, or starting with "*." for a suffix
	l7      bool
}

type pathKind int

const (
	pathExact pathKind = iota
	pathPrefix
	pathGlob
)

type cpath struct {
	kind  pathKind
	value string
	glob  *glob
}

// Compile compiles policies into an Engine. It always returns an engine;
// when some policies do not compile it also returns a *CompileError (which
// matches ErrCompile) listing every problem with its field, and the engine
// fails closed on them: a broken deny policy denies everything it selects,
// a broken allow policy allows nothing. Engine.Problems lists them again
// for status reporting.
func Compile(policies []v1alpha1.AccessPolicy, opts Options) (*Engine, error) {
	if opts.TrustDomain.IsZero() {
		return nil, errors.New("policy: Options.TrustDomain is required: namespace and service account matches need the cluster's trust domain")
	}
	env, err := newCELEnv()
	if err != nil {
		return nil, err
	}
	e := &Engine{td: opts.TrustDomain, namespaces: map[string]*nsIndex{}, enrollment: opts.Enrollment}
	if e.enrollment == nil {
		e.enrollment = func(string) (v1alpha1.Mode, bool) { return v1alpha1.ModeEnforce, true }
	}
	sorted := make([]*v1alpha1.AccessPolicy, len(policies))
	for i := range policies {
		sorted[i] = &policies[i]
	}
	sort.SliceStable(sorted, func(i, j int) bool {
		a, b := sorted[i], sorted[j]
		return a.Namespace < b.Namespace || a.Namespace == b.Namespace && a.Name < b.Name
	})
	for i, p := range sorted {
		c := &compiler{env: env, p: p}
		cp := c.policy(i)
		e.problems = append(e.problems, c.problems...)
		if cp == nil {
			continue
		}
		e.add(cp)
	}
	if len(e.problems) > 0 {
		return e, &CompileError{Problems: e.problems}
	}
	return e, nil
}

// Problems lists the policies that did not compile, and why.
func (e *Engine) Problems() []*PolicyError { return e.problems }

// Rules counts the compiled rules.
func (e *Engine) Rules() int { return e.rules }

func (e *Engine) add(p *cpolicy) {
	idx := e.namespaces[p.ref.Namespace]
	if idx == nil {
		idx = &nsIndex{bySA: map[string][]*cpolicy{}, byLabel: map[labelPair][]*cpolicy{}}
		e.namespaces[p.ref.Namespace] = idx
	}
	for _, rs := range p.byPort {
		e.rules += len(rs)
	}
	e.rules += len(p.anyPort)
	switch {
	case len(p.sas) > 0:
		for sa := range p.sas {
			idx.bySA[sa] = append(idx.bySA[sa], p)
		}
	case len(p.labels) > 0:
		keys := make([]string, 0, len(p.labels))
		for k := range p.labels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		lp := labelPair{keys[0], p.labels[keys[0]]}
		idx.byLabel[lp] = append(idx.byLabel[lp], p)
	default:
		idx.all = append(idx.all, p)
	}
}

// compiler compiles one policy, collecting its problems.
type compiler struct {
	env      *cel.Env
	p        *v1alpha1.AccessPolicy
	problems []*PolicyError
}

func (c *compiler) bad(field, format string, args ...any) {
	c.problems = append(c.problems, &PolicyError{Namespace: c.p.Namespace, Name: c.p.Name, Field: field, Message: fmt.Sprintf(format, args...)})
}

// methodRE is the CRD's pattern for HTTP methods.
var methodRE = regexp.MustCompile(`^[A-Z][A-Z_-]*$`)

// maxRules is the CRD's limit on rules per policy; it also keeps rule
// ordinals apart.
const maxRules = 64

// policy compiles c.p; nil when it contributes nothing (a broken allow
// policy).
func (c *compiler) policy(ordinal int) *cpolicy {
	p, spec := c.p, &c.p.Spec
	cp := &cpolicy{ref: RuleRef{Namespace: p.Namespace, Policy: p.Name}, ordinal: ordinal, byPort: map[int32][]*crule{}}
	if p.Namespace == "" {
		c.bad("metadata.namespace", "is empty: an AccessPolicy applies to the workloads of its own namespace")
	} else if errs := validation.IsDNS1123Label(p.Namespace); len(errs) > 0 {
		c.bad("metadata.namespace", "%q is not a namespace name: %s", p.Namespace, strings.Join(errs, "; "))
	}
	if errs := validation.IsDNS1123Subdomain(p.Name); len(errs) > 0 {
		c.bad("metadata.name", "%q is not an object name: %s", p.Name, strings.Join(errs, "; "))
	}
	if len(spec.Rules) > maxRules {
		c.bad("spec.rules", "has %d rules; at most %d: split the policy", len(spec.Rules), maxRules)
		spec = &v1alpha1.AccessPolicySpec{Selector: spec.Selector, Action: spec.Action, Mode: spec.Mode, Rules: spec.Rules[:maxRules]}
	}
	switch spec.Action {
	case v1alpha1.ActionAllow, "":
	case v1alpha1.ActionDeny:
		cp.deny = true
	default:
		c.bad("spec.action", "%q is not Allow or Deny", spec.Action)
		cp.deny = true // an unknown action fails closed
	}
	switch spec.Mode {
	case v1alpha1.ModeEnforce, "":
	case v1alpha1.ModeAudit:
		cp.audit = true
	default:
		c.bad("spec.mode", "%q is not Enforce or Audit", spec.Mode)
	}
	if !c.selector(cp) && cp.deny {
		// A broken selector cannot be trusted to select what it meant:
		// the deny policy then covers the whole namespace.
		cp.labels, cp.sas = nil, nil
	}
	if len(spec.Rules) == 0 {
		c.bad("spec.rules", "is empty: a policy needs at least one rule (a rule with no fields matches every request)")
	}
	names := map[string]int{}
	for i := range spec.Rules {
		r := &spec.Rules[i]
		field := fmt.Sprintf("spec.rules[%d]", i)
		name := r.Name
		if name == "" {
			name = fmt.Sprintf("rules[%d]", i)
		} else if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
			c.bad(field+".name", "%q is not a rule name: %s", name, strings.Join(errs, "; "))
		} else if j, dup := names[name]; dup {
			c.bad(field+".name", "%q is also the name of rules[%d]: rule names must be unique in a policy", name, j)
		}
		names[name] = i
		cr := c.rule(r, field)
		cr.ref = RuleRef{Namespace: p.Namespace, Policy: p.Name, Rule: name}
		cr.ordinal = ordinal<<16 | i
		cp.addRule(cr)
	}
	if len(c.problems) == 0 {
		return cp
	}
	if !cp.deny {
		return nil // a broken allow policy allows nothing
	}
	cp.broken = true
	return cp
}

// selector compiles the selector; false if it has problems.
func (c *compiler) selector(cp *cpolicy) bool {
	before := len(c.problems)
	sel := &c.p.Spec.Selector
	for k, v := range sel.MatchLabels {
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			c.bad("spec.selector.matchLabels", "key %q: %s", k, strings.Join(errs, "; "))
		}
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			c.bad("spec.selector.matchLabels", "value %q of %q: %s", v, k, strings.Join(errs, "; "))
		}
	}
	cp.labels = sel.MatchLabels
	if len(sel.ServiceAccounts) > 0 {
		cp.sas = map[string]struct{}{}
		for i, sa := range sel.ServiceAccounts {
			if errs := validation.IsDNS1123Subdomain(sa); len(errs) > 0 {
				c.bad(fmt.Sprintf("spec.selector.serviceAccounts[%d]", i), "%q is not a service account name: %s", sa, strings.Join(errs, "; "))
			}
			cp.sas[sa] = struct{}{}
		}
	}
	return len(c.problems) == before
}

func (cp *cpolicy) addRule(r *crule) {
	anyPort := len(r.to) == 0
	for _, d := range r.to {
		if len(d.ports) == 0 {
			anyPort = true
		}
	}
	if anyPort {
		cp.anyPort = append(cp.anyPort, r)
		return
	}
	seen := map[int32]bool{}
	for _, d := range r.to {
		for _, port := range d.ports {
			if !seen[port] {
				seen[port] = true
				cp.byPort[port] = append(cp.byPort[port], r)
			}
		}
	}
}

func (c *compiler) rule(r *v1alpha1.Rule, field string) *crule {
	cr := &crule{}
	for i := range r.From {
		cr.from = append(cr.from, c.source(&r.From[i], fmt.Sprintf("%s.from[%d]", field, i)))
	}
	for i := range r.To {
		cr.to = append(cr.to, c.dest(&r.To[i], fmt.Sprintf("%s.to[%d]", field, i)))
	}
	if r.When != "" {
		prg, err := compileCEL(c.env, r.When)
		if err != nil {
			c.bad(field+".when", "%v", err)
		}
		cr.when = prg
	}
	return cr
}

func (c *compiler) source(s *v1alpha1.Source, field string) csource {
	var cs csource
	if len(s.SPIFFEIDs)+len(s.Namespaces)+len(s.ServiceAccounts) == 0 && s.User == nil {
		c.bad(field, "sets nothing: name spiffeIDs, namespaces, serviceAccounts or user (to allow any source, leave from out)")
	}
	for i, id := range s.SPIFFEIDs {
		f := fmt.Sprintf("%s.spiffeIDs[%d]", field, i)
		cs.hasIDs = true
		if !hasWildcard(id) {
			if _, err := spiffeid.FromString(id); err != nil {
				c.bad(f, "%q is not a SPIFFE ID: %v", id, err)
			}
			if cs.ids == nil {
				cs.ids = map[string]struct{}{}
			}
			cs.ids[id] = struct{}{}
			continue
		}
		rest, ok := strings.CutPrefix(id, "spiffe://")
		tdName, _, _ := strings.Cut(rest, "/")
		if !ok || !strings.Contains(rest, "/") {
			c.bad(f, "pattern %q must start with spiffe://<trust-domain>/", id)
		} else if _, err := spiffeid.TrustDomainFromString(tdName); err != nil {
			c.bad(f, "pattern %q: wildcards may stand only in the path, never in the trust domain %q", id, tdName)
		}
		g, err := compileGlob(id)
		if err != nil {
			c.bad(f, "pattern %q is %v", id, err)
			continue
		}
		cs.idGlobs = append(cs.idGlobs, g)
	}
	for i, ns := range s.Namespaces {
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			c.bad(fmt.Sprintf("%s.namespaces[%d]", field, i), "%q is not a namespace name: %s", ns, strings.Join(errs, "; "))
		}
		if cs.namespaces == nil {
			cs.namespaces = map[string]struct{}{}
		}
		cs.namespaces[ns] = struct{}{}
	}
	for i, sa := range s.ServiceAccounts {
		ns, name, ok := strings.Cut(sa, "/")
		if !ok {
			ns, name = c.p.Namespace, sa
		}
		if len(validation.IsDNS1123Label(ns)) > 0 || len(validation.IsDNS1123Subdomain(name)) > 0 {
			c.bad(fmt.Sprintf("%s.serviceAccounts[%d]", field, i), "%q is not a service account: write namespace/name, or name for this namespace", sa)
		}
		if cs.sas == nil {
			cs.sas = map[saKey]struct{}{}
		}
		cs.sas[saKey{ns, name}] = struct{}{}
	}
	if u := s.User; u != nil {
		if u.Issuer == "" && len(u.Subjects) == 0 && len(u.Claims) == 0 {
			c.bad(field+".user", "sets nothing: name an issuer, subjects or claims")
		}
		cu := &cuser{issuer: u.Issuer}
		for _, sub := range u.Subjects {
			if cu.subjects == nil {
				cu.subjects = map[string]struct{}{}
			}
			cu.subjects[sub] = struct{}{}
		}
		for k, v := range u.Claims {
			cu.claims = append(cu.claims, claimMatch{k, v})
		}
		sort.Slice(cu.claims, func(i, j int) bool { return cu.claims[i].name < cu.claims[j].name })
		cs.user = cu
	}
	return cs
}

func (c *compiler) dest(d *v1alpha1.Destination, field string) cdest {
	cd := cdest{ports: d.Ports}
	if len(d.Ports)+len(d.Methods)+len(d.Paths)+len(d.Hosts) == 0 {
		c.bad(field, "sets nothing: name ports, methods, paths or hosts (to allow any destination, leave to out)")
	}
	for i, p := range d.Ports {
		if p < 1 || p > 65535 {
			c.bad(fmt.Sprintf("%s.ports[%d]", field, i), "%d is not a port: use 1 to 65535", p)
		}
	}
	for i, m := range d.Methods {
		if !methodRE.MatchString(m) || len(m) > 32 {
			c.bad(fmt.Sprintf("%s.methods[%d]", field, i), "%q is not an HTTP method: write it in upper case, such as GET", m)
		}
		cd.methods = append(cd.methods, m)
	}
	for i, pm := range d.Paths {
		f := fmt.Sprintf("%s.paths[%d]", field, i)
		n := 0
		var cpth cpath
		for _, k := range []struct {
			kind pathKind
			v    string
		}{{pathExact, pm.Exact}, {pathPrefix, pm.Prefix}, {pathGlob, pm.Glob}} {
			if k.v != "" {
				n++
				cpth = cpath{kind: k.kind, value: k.v}
			}
		}
		if n != 1 {
			c.bad(f, "sets %d of exact, prefix and glob: set exactly one", n)
			continue
		}
		if !strings.HasPrefix(cpth.value, "/") {
			c.bad(f, "%q does not start with /", cpth.value)
		}
		if cpth.kind == pathPrefix {
			cpth.value = strings.TrimSuffix(cpth.value, "/")
		}
		if cpth.kind == pathGlob {
			g, err := compileGlob(cpth.value)
			if err != nil {
				c.bad(f, "glob %q is %v", cpth.value, err)
				continue
			}
			cpth.glob = g
		}
		cd.paths = append(cd.paths, cpth)
	}
	for i, h := range d.Hosts {
		name := strings.TrimPrefix(h, "*.")
		if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
			c.bad(fmt.Sprintf("%s.hosts[%d]", field, i), "%q is not a host name (lower case, optionally *.suffix): %s", h, strings.Join(errs, "; "))
		}
		cd.hosts = append(cd.hosts, h)
	}
	cd.l7 = len(cd.methods)+len(cd.paths)+len(cd.hosts) > 0
	return cd
}
