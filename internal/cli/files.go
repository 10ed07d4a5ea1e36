package cli

import (
	"fmt"
	"io"
	"os"
)

// maxCAFile bounds a file of CA certificates: a few KiB each.
const maxCAFile = 1 << 20

// maxBundleFile bounds a trust bundle file: a ClusterTrustBundle is under
// 1 MiB.
const maxBundleFile = 2 << 20

// readSmallFile reads the file name, refusing one over limit bytes, which
// is read no further (a device or a pipe has no size to check first);
// what says what the file should be, for the error.
func readSmallFile(name string, limit int64, what string) ([]byte, error) {
	f, err := os.Open(name) //nolint:gosec // the file is the user's argument
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }() // read-only
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is over %d KiB: it is not %s", name, limit>>10, what)
	}
	return b, nil
}
