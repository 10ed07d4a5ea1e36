package cli

import "errors"

// ExitError carries the exit status a command wants, for outcomes that are
// not failures of the command itself (a denied request in `policy test`).
type ExitError struct {
	Code int
	Err  error
	// Quiet: the command already told the person; print nothing more.
	Quiet bool
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// Quiet reports whether err was already reported by its command.
func Quiet(err error) bool {
	var ee *ExitError
	return errors.As(err, &ee) && ee.Quiet
}

// ExitCode returns the exit status for err: 0 for nil, the code of an
// *ExitError, 1 otherwise.
func ExitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	return 1
}
