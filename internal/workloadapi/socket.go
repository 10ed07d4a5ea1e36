package workloadapi

import (
	"context"
	"fmt"
	"net"

	"kzero.dev/kzero/internal/unixsocket"
)

// listen makes the Workload API's socket at path, connectable by every
// user from the moment it appears (attestation, not the file mode, decides
// what each gets), replacing a socket a previous agent left there; Closing
// the listener removes it, unless another agent has replaced it since
// (unixsocket.Listen).
func listen(ctx context.Context, path string) (net.Listener, error) {
	lis, err := unixsocket.Listen(ctx, path, 0o777)
	if err != nil {
		return nil, fmt.Errorf("workloadapi: %w", err)
	}
	return lis, nil
}
