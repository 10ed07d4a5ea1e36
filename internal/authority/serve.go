package authority

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// shutdownGrace is how long a server's requests in flight get once its
// context ends.
const shutdownGrace = 5 * time.Second

// listen returns ln, or when it is nil a new listener on the TCP address
// addr; what names the server in the error.
func listen(ctx context.Context, ln net.Listener, addr, what string) (net.Listener, error) {
	if ln != nil {
		return ln, nil
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("authority: %s: %w", what, err)
	}
	return ln, nil
}

// serveTLS serves srv over TLS (srv.TLSConfig) on ln until ctx ends, then
// stops accepting, gives the requests in flight shutdownGrace and returns
// ctx.Err(); it returns early only if it cannot serve. what names the
// server in its errors and log.
func serveTLS(ctx context.Context, srv *http.Server, ln net.Listener, log *slog.Logger, what string) error {
	srv.BaseContext = func(net.Listener) context.Context { return context.WithoutCancel(ctx) }
	served := make(chan error, 1)
	go func() { served <- srv.ServeTLS(ln, "", "") }()
	select {
	case err := <-served:
		return fmt.Errorf("authority: %s: %w", what, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		log.Warn("the "+what+" server stopped with an error", "error", err)
	}
	return ctx.Err()
}
