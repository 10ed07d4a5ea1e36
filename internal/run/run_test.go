package run

import (
	"context"
	"errors"
	"testing"
)

// TestAll: a failure stops the others and is what All returns; otherwise
// All returns once ctx ends, with ctx's error.
func TestAll(t *testing.T) {
	boom := errors.New("boom")
	waits := func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
	fails := func(context.Context) error { return boom }
	if err := All(t.Context(), waits, fails, waits); !errors.Is(err, boom) {
		t.Errorf("All with a failure = %v, want %v", err, boom)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := All(ctx, waits, waits); !errors.Is(err, context.Canceled) {
		t.Errorf("All after ctx ended = %v, want context.Canceled", err)
	}
	done := func(context.Context) error { return nil }
	ctx, cancel = context.WithCancel(t.Context())
	go cancel()
	if err := All(ctx, done, waits); !errors.Is(err, context.Canceled) {
		t.Errorf("All with one part done early = %v, want context.Canceled once ctx ended", err)
	}
}
