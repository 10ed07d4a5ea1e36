package policy

import (
	"fmt"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/interpreter"
)

// CEL limits: a condition whose estimated worst-case cost is over
// celCostLimit is refused at compile time, and evaluation stops at the same
// limit whatever the input.
const (
	celCostLimit  = 10000
	celMaxExprLen = 2048 // bytes
	maxStringSize = 4096 // bytes of a path, header value or claim, for estimates
	maxMapEntries = 64   // headers, claims, labels, claim lists, for estimates
)

// celVariables are the attributes a `when` condition may read.
var celVariables = []struct {
	name string
	typ  *cel.Type
}{
	{"source.spiffeID", cel.StringType},
	{"source.trustDomain", cel.StringType},
	{"source.namespace", cel.StringType},
	{"source.serviceAccount", cel.StringType},
	{"destination.namespace", cel.StringType},
	{"destination.serviceAccount", cel.StringType},
	{"destination.labels", cel.MapType(cel.StringType, cel.StringType)},
	{"request.port", cel.IntType},
	{"request.http", cel.BoolType},
	{"request.method", cel.StringType},
	{"request.path", cel.StringType},
	{"request.host", cel.StringType},
	{"request.headers", cel.MapType(cel.StringType, cel.StringType)},
	{"user.issuer", cel.StringType},
	{"user.subject", cel.StringType},
	{"user.claims", cel.MapType(cel.StringType, cel.DynType)},
}

// newCELEnv makes the environment conditions compile in. It is built once
// per Compile.
func newCELEnv() (*cel.Env, error) {
	opts := make([]cel.EnvOption, 0, len(celVariables)+1)
	for _, v := range celVariables {
		opts = append(opts, cel.Variable(v.name, v.typ))
	}
	opts = append(opts, cel.HomogeneousAggregateLiterals())
	env, err := cel.NewEnv(opts...)
	if err != nil {
		return nil, fmt.Errorf("policy: CEL environment: %w", err)
	}
	return env, nil
}

// compileCEL compiles, type-checks and cost-checks one condition.
func compileCEL(env *cel.Env, expr string) (cel.Program, error) {
	if len(expr) > celMaxExprLen {
		return nil, fmt.Errorf("is %d characters; at most %d", len(expr), celMaxExprLen)
	}
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		return nil, fmt.Errorf("does not compile: %w", iss.Err())
	}
	if !ast.OutputType().IsExactType(cel.BoolType) {
		return nil, fmt.Errorf("has type %s; a condition must be a bool", ast.OutputType())
	}
	est, err := env.EstimateCost(ast, sizeEstimator{})
	if err != nil {
		return nil, fmt.Errorf("cost cannot be estimated: %w", err)
	}
	if est.Max > celCostLimit {
		return nil, fmt.Errorf("may cost up to %d to evaluate; the limit is %d: simplify it (fewer loops over headers or claims)", est.Max, celCostLimit)
	}
	prg, err := env.Program(ast, cel.CostLimit(celCostLimit), cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, fmt.Errorf("cannot be planned: %w", err)
	}
	return prg, nil
}

// sizeEstimator bounds the variables' sizes for cost estimates.
type sizeEstimator struct{}

func (sizeEstimator) EstimateSize(element checker.AstNode) *checker.SizeEstimate {
	if element.Path() == nil {
		return nil
	}
	switch element.Type().Kind() {
	case cel.StringType.Kind(), cel.BytesType.Kind():
		return &checker.SizeEstimate{Min: 0, Max: maxStringSize}
	case cel.MapType(cel.StringType, cel.DynType).Kind(), cel.ListType(cel.DynType).Kind(), cel.DynType.Kind():
		// Claims' values (lists of groups, say) are bounded like maps.
		return &checker.SizeEstimate{Min: 0, Max: maxMapEntries}
	default:
		return nil // numbers and booleans have no size
	}
}

func (sizeEstimator) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}

// activation exposes a Request to CEL without building maps. It holds
// copies, so that nothing of the caller's escapes to the heap on the path
// without CEL.
type activation struct {
	req Request
	src source
	r   *Request
}

var _ interpreter.Activation = (*activation)(nil)

func (a *activation) ResolveName(name string) (any, bool) {
	r := a.r
	switch name {
	case "source.spiffeID":
		return a.src.id, true
	case "source.trustDomain":
		return a.src.td, true
	case "source.namespace":
		return a.src.ns, true
	case "source.serviceAccount":
		return a.src.sa, true
	case "destination.namespace":
		return r.Destination.Namespace, true
	case "destination.serviceAccount":
		return r.Destination.ServiceAccount, true
	case "destination.labels":
		return stringMap(r.Destination.Labels), true
	case "request.port":
		return int64(r.Port), true
	case "request.http":
		return r.HTTP, true
	case "request.method", "request.path", "request.host", "request.headers":
		if !r.HTTP {
			// Not HTTP: reading them is an error, so that a condition on
			// them fails closed (deny rules match, allow rules do not).
			return nil, false
		}
		switch name {
		case "request.method":
			return r.Method, true
		case "request.path":
			return r.Path, true
		case "request.host":
			return r.Host, true
		}
		return stringMap(r.Headers), true
	case "user.issuer", "user.subject", "user.claims":
		return a.user(name), true
	}
	return nil, false
}

func (a *activation) user(name string) any {
	u := a.r.User
	switch name {
	case "user.issuer":
		if u == nil {
			return ""
		}
		return u.Issuer
	case "user.subject":
		if u == nil {
			return ""
		}
		return u.Subject
	}
	if u == nil || u.Claims == nil {
		return map[string]any{}
	}
	return u.Claims
}

func (a *activation) Parent() interpreter.Activation { return nil }

func stringMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// evalCEL runs a condition: true, false, or an error (cost limit, a missing
// key) that the caller turns into a fail-closed result.
func evalCEL(prg cel.Program, r *Request, src *source) (bool, error) {
	a := &activation{req: *r, src: *src}
	a.r = &a.req
	out, _, err := prg.Eval(a)
	if err != nil {
		return false, err
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, fmt.Errorf("condition returned %v", refType(out))
	}
	return b, nil
}

func refType(v ref.Val) string { return fmt.Sprint(v.Type()) }
