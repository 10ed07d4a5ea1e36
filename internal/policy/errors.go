package policy

import (
	"errors"
	"fmt"
)

// PolicyError is one problem of one policy, with the field it concerns.
type PolicyError struct {
	// Namespace and Name of the policy.
	Namespace, Name string
	// Field is the path in the object, such as spec.rules[1].when.
	Field string
	// Message says what is wrong and what to do.
	Message string
}

func (e *PolicyError) Error() string {
	return fmt.Sprintf("policy %s/%s: %s: %s", e.Namespace, e.Name, e.Field, e.Message)
}

// ErrCompile is matched by the error Compile returns when any policy does
// not compile.
var ErrCompile = errors.New("policy: some policies do not compile")

// CompileError lists every problem Compile found.
type CompileError struct {
	Problems []*PolicyError
}

func (e *CompileError) Error() string {
	msg := fmt.Sprintf("policy: %d problem(s):", len(e.Problems))
	for _, p := range e.Problems {
		msg += "\n  " + p.Error()
	}
	return msg
}

// Is makes errors.Is(err, ErrCompile) true.
func (e *CompileError) Is(target error) bool { return target == ErrCompile }
