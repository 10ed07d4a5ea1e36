package audit

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Checkpoint defaults.
const (
	DefaultCheckpointEvery    = 1000
	DefaultCheckpointInterval = time.Minute
)

// ChainConfig configures a Chain. Zero values mean the defaults.
type ChainConfig struct {
	// Component is the role writing the chain; it is stamped on
	// checkpoints. Required.
	Component Component
	// SVIDs gives the component's current X.509-SVID, whose key signs
	// checkpoints (ECDSA P-256 or P-384). Required. It is asked at every
	// checkpoint, so that a rotated SVID is used as soon as it is issued.
	SVIDs x509svid.Source
	// Every is how many records a checkpoint follows at most;
	// DefaultCheckpointEvery by default.
	Every int
	// Interval is how old the last checkpoint may get before the next
	// record is followed by one, and how often Run checkpoints;
	// DefaultCheckpointInterval by default.
	Interval time.Duration
	// Start is where the chain continues: the zero Head for a new chain
	// (a stream, at every start of the component), Report.Last of a
	// file's existing records (see OpenFile).
	Start Head
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Rand is the randomness of signatures; nil means crypto/rand.Reader.
	Rand io.Reader
	// Logger receives what Run cannot return; nil means slog.Default().
	Logger *slog.Logger
}

// Chain appends records to a hash-chained log, each linked by SHA-256 to
// the one before it, with signed checkpoints: the component's stream
// (os.Stdout), or a file. It is safe for concurrent use; records are
// written in the order Append is called, each in one Write. A write error
// is returned and breaks the chain: every later call returns ErrBroken.
type Chain struct {
	cfg ChainConfig

	mu       sync.Mutex
	w        io.Writer
	head     Head
	unsigned int       // records since the last checkpoint
	signedAt time.Time // time of the last checkpoint, or of the start
	err      error     // sticky: ErrBroken or ErrClosed
	buf      []byte
}

// NewChain returns a Chain that appends to w: os.Stdout, or a file opened
// for appending (see OpenFile).
func NewChain(w io.Writer, cfg ChainConfig) (*Chain, error) {
	if w == nil {
		return nil, fmt.Errorf("audit: NewChain: nil writer")
	}
	if cfg.Component == "" || cfg.SVIDs == nil {
		return nil, fmt.Errorf("audit: NewChain: Component and SVIDs are required")
	}
	if cfg.Every <= 0 {
		cfg.Every = DefaultCheckpointEvery
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultCheckpointInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Chain{cfg: cfg, w: w, head: cfg.Start, signedAt: cfg.Now()}, nil
}

// Head returns the chain's last record.
func (c *Chain) Head() Head {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.head
}

// Append writes event, one JSON object without a newline, as the chain's
// next record, followed by a checkpoint when one is due. An error wrapping
// ErrCheckpoint means the record was written but its checkpoint was not;
// the next record tries again.
func (c *Chain) Append(event []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.write(event, nil); err != nil {
		return err
	}
	c.unsigned++
	if c.unsigned >= c.cfg.Every || c.cfg.Now().Sub(c.signedAt) >= c.cfg.Interval {
		return c.checkpoint()
	}
	return nil
}

// Checkpoint appends a signed checkpoint now if any record follows the
// last one.
func (c *Chain) Checkpoint() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	return c.checkpoint()
}

// Run appends a checkpoint every Interval while records arrive, so that
// a quiet component's last records do not stay unsigned, until ctx ends;
// it returns ctx.Err(). Failures are logged and tried again.
func (c *Chain) Run(ctx context.Context) error {
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			if err := c.Checkpoint(); err != nil && !errors.Is(err, ErrClosed) {
				c.cfg.Logger.ErrorContext(ctx, "audit checkpoint failed", "err", err)
			}
		}
	}
}

// Close appends a last checkpoint if records follow the last one; later
// calls return ErrClosed. It does not close the writer.
func (c *Chain) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	err := c.checkpoint()
	if c.err == nil {
		c.err = ErrClosed
	}
	return err
}

// checkpoint signs the chain's head and appends the checkpoint; c.mu is
// held.
func (c *Chain) checkpoint() error {
	if c.unsigned == 0 {
		return nil
	}
	now := c.cfg.Now()
	svid, err := c.cfg.SVIDs.GetX509SVID()
	if err != nil {
		return fmt.Errorf("%w after record %d: getting the SVID: %w", ErrCheckpoint, c.head.Seq, err)
	}
	if svid == nil || len(svid.Certificates) == 0 {
		return fmt.Errorf("%w after record %d: the SVID source returned no certificate", ErrCheckpoint, c.head.Seq)
	}
	alg, _, err := algFor(svid.Certificates[0].PublicKey)
	if err != nil {
		return fmt.Errorf("%w after record %d: %w", ErrCheckpoint, c.head.Seq, err)
	}
	cp := checkpointV1{Signer: svid.ID, Alg: alg, X5C: make([][]byte, len(svid.Certificates))}
	for i, cert := range svid.Certificates {
		cp.X5C[i] = cert.Raw
	}
	body, err := json.Marshal(struct {
		Schema     string        `json:"schema"`
		Time       string        `json:"time"`
		Component  Component     `json:"component"`
		Kind       Kind          `json:"kind"`
		Checkpoint *checkpointV1 `json:"checkpoint"`
	}{Schema, now.UTC().Format(TimeFormat), c.cfg.Component, KindCheckpoint, &cp})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrCheckpoint, err)
	}
	signFn := func(msg []byte) ([]byte, error) { return sign(svid, msg, now, c.cfg.Rand) }
	if err := c.write(body, signFn); err != nil {
		return err
	}
	c.unsigned, c.signedAt = 0, now
	return nil
}

// write seals body as the next record and writes it; a checkpoint's sig
// member comes from signFn. c.mu is held.
func (c *Chain) write(body []byte, signFn func([]byte) ([]byte, error)) error {
	if c.err != nil {
		return c.err
	}
	if len(body) < 2 || body[0] != '{' || body[len(body)-1] != '}' {
		return fmt.Errorf("audit: record %d is not a JSON object", c.head.Seq+1)
	}
	seq := c.head.Seq + 1
	line := openRecord(c.buf[:0], body, seq, &c.head.Hash)
	if signFn != nil {
		sig, err := signFn(line)
		if err != nil {
			return fmt.Errorf("%w after record %d: %w", ErrCheckpoint, c.head.Seq, err)
		}
		line = append(line, sigMember...)
		line = base64.StdEncoding.AppendEncode(line, sig)
		line = append(line, '"')
	}
	line, sum := closeRecord(line)
	line = append(line, '\n')
	c.buf = line
	if _, err := c.w.Write(line); err != nil {
		c.err = fmt.Errorf("%w: writing record %d: %w", ErrBroken, seq, err)
		return c.err
	}
	c.head = Head{Seq: seq, Hash: sum}
	return nil
}
