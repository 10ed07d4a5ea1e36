// Package run runs a process's long-lived parts together.
package run

import (
	"context"
	"errors"
	"sync"
)

// All runs every fn until ctx ends or one of them fails; a failure stops
// the others and is returned, else ctx.Err(). Each fn must return once its
// context ends.
func All(ctx context.Context, fns ...func(context.Context) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for _, fn := range fns {
		wg.Go(func() {
			if err := fn(ctx); err != nil && !errors.Is(err, context.Canceled) {
				cancel(err)
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}
