package cli

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"kzero.dev/kzero/internal/audit"
)

// The range of --audit-checkpoint-interval: at least a second, so that
// checkpoints do not crowd out the events; at most an hour, the SVIDs'
// lifetime, so that a quiet component's last events do not stay unsigned
// for long.
const (
	minAuditInterval = time.Second
	maxAuditInterval = time.Hour
)

// auditTrail is a component's audit trail: its events as one hash chain on
// its standard output, with checkpoints signed by its own SVID. It is safe
// for concurrent use.
type auditTrail struct {
	rec    *audit.Recorder
	stream *audit.Chain
	log    *slog.Logger
}

// newAuditTrail chains the events of component on out (os.Stdout), with a
// checkpoint signed by svids every interval while events arrive, every
// audit.DefaultCheckpointEvery events, and on Close.
func newAuditTrail(out io.Writer, component audit.Component, svids x509svid.Source, interval time.Duration, log *slog.Logger) (*auditTrail, error) {
	stream, err := audit.NewChain(out, audit.ChainConfig{Component: component, SVIDs: svids, Interval: interval, Logger: log})
	if err != nil {
		return nil, err
	}
	rec, err := audit.NewRecorder(audit.Config{Component: component, Chains: []*audit.Chain{stream}})
	if err != nil {
		return nil, err
	}
	return &auditTrail{rec: rec, stream: stream, log: log}, nil
}

// Record writes the event. A checkpoint that cannot be signed (no SVID
// yet: the authority has not loaded its CA) is logged, not returned: the
// event went out, and the next checkpoint signs it. Any other error, the
// event not written, is returned.
func (a *auditTrail) Record(e audit.Event) error {
	err := a.rec.Record(e)
	// The one Chain returns one error: ErrCheckpoint only when the event
	// was written.
	if errors.Is(err, audit.ErrCheckpoint) {
		a.log.Warn("audit checkpoint waits: the event was recorded, the next checkpoint signs it", "error", err)
		return nil
	}
	return err
}

// Run checkpoints a quiet stream every interval until ctx ends.
func (a *auditTrail) Run(ctx context.Context) error { return a.stream.Run(ctx) }

// Close writes the last checkpoint; a failure is logged, as the process
// is stopping.
func (a *auditTrail) Close() {
	if err := a.rec.Close(); err != nil {
		a.log.Error("the audit stream's last checkpoint failed: its last records stay unsigned", "error", err)
	}
}
