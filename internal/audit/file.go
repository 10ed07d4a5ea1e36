package audit

import (
	"errors"
	"fmt"
	"os"
)

// OpenFile opens the chained file at path for appending, creating it with
// mode 0600 when missing, and verifies the records it already holds with
// opts, so that a Chain continues them: pass the returned Head as
// ChainConfig.Start (the zero Head for a new or empty file). A file that
// does not verify is refused, and left as it is: move it aside, keep it as
// evidence, and start a new one. A file that ends with no checkpoint (its
// writer stopped before signing one) is continued: the next checkpoint
// signs its records too, so opts.AllowUnsigned is set.
func OpenFile(path string, opts Options) (*os.File, Head, error) {
	opts.AllowUnsigned, opts.Stream = true, false
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600) //nolint:gosec // the path is the operator's configuration
	if err != nil {
		return nil, Head{}, fmt.Errorf("audit: opening the chained file: %w", err)
	}
	rep, err := Verify(f, opts)
	switch {
	case errors.Is(err, ErrEmpty):
		return f, opts.After, nil
	case err != nil:
		_ = f.Close()
		return nil, Head{}, fmt.Errorf("audit: %s does not verify, so nothing is appended to it; move it aside and start a new file: %w", path, err)
	}
	return f, rep.Last, nil
}
