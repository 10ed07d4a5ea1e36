package audit

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// Config configures a Recorder.
type Config struct {
	// Component is the role recording; it is stamped on events that name
	// none. Required.
	Component Component
	// Out receives every event as one JSON line: os.Stdout in production.
	// Required.
	Out io.Writer
	// Chain, if set, also receives every event, as a record of a
	// hash-chained file. Close closes it.
	Chain *Chain
	// Metrics, if set, counts events.
	Metrics *Metrics
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Rand is the source of event IDs; nil means crypto/rand.Reader.
	Rand io.Reader
}

// Recorder writes audit events to a stream and, optionally, a chained
// file. It is safe for concurrent use: events are written whole and in
// the same order to both.
type Recorder struct {
	cfg Config

	mu     sync.Mutex
	buf    bytes.Buffer
	enc    *json.Encoder
	closed bool
}

// NewRecorder returns a Recorder for cfg.
func NewRecorder(cfg Config) (*Recorder, error) {
	switch cfg.Component {
	case ComponentAuthority, ComponentAgent, ComponentGateway, ComponentCLI:
	default:
		return nil, fmt.Errorf("audit: NewRecorder: component %q is not authority, agent, gateway or cli", cfg.Component)
	}
	if cfg.Out == nil {
		return nil, errors.New("audit: NewRecorder: Out is required (os.Stdout in production)")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	r := &Recorder{cfg: cfg}
	r.enc = json.NewEncoder(&r.buf)
	r.enc.SetEscapeHTML(false)
	return r, nil
}

// Record stamps e (Schema; Time, ID and Component when empty), validates
// it, and writes it to Out and the Chain. A write error is returned, never
// dropped: to Out, or from the Chain (ErrBroken, ErrCheckpoint), or both
// joined. An invalid event wraps ErrInvalidEvent and is not written.
func (r *Recorder) Record(e Event) error {
	e.Schema = Schema
	if e.Time.IsZero() {
		e.Time = r.cfg.Now()
	}
	if e.Component == "" {
		e.Component = r.cfg.Component
	}
	if e.ID == "" {
		var id [16]byte
		if _, err := io.ReadFull(r.cfg.Rand, id[:]); err != nil {
			return fmt.Errorf("audit: making an event ID: %w", err)
		}
		e.ID = hex.EncodeToString(id[:])
	}
	if err := e.Validate(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	r.buf.Reset()
	if err := r.enc.Encode(e.wire()); err != nil {
		return fmt.Errorf("audit: encoding event %s: %w", e.ID, err)
	}
	line := r.buf.Bytes()
	var outErr, chainErr error
	if _, err := r.cfg.Out.Write(line); err != nil {
		outErr = fmt.Errorf("audit: writing event %s: %w", e.ID, err)
	}
	if r.cfg.Chain != nil {
		chainErr = r.cfg.Chain.Append(line[:len(line)-1])
	}
	r.cfg.Metrics.event(e.Kind, e.Outcome, outErr == nil && chainErr == nil)
	return errors.Join(outErr, chainErr)
}

// Close closes the Chain, which appends its last checkpoint; later
// Records return ErrClosed. It closes neither Out nor the chain's file.
func (r *Recorder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	if r.cfg.Chain != nil {
		return r.cfg.Chain.Close()
	}
	return nil
}
