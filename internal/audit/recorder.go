package audit

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"
)

// Config configures a Recorder.
type Config struct {
	// Component is the role recording; it is stamped on events that name
	// none. Required.
	Component Component
	// Out, if set, receives every event as one plain JSON line. A
	// component that has an SVID writes its stream as a Chain instead.
	Out io.Writer
	// Chains each receive every event as their next record: the chain of
	// the component's stream, on os.Stdout, and of a chained file. Close
	// closes them. Out or Chains is required.
	Chains []*Chain
	// Metrics, if set, counts events.
	Metrics *Metrics
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Rand is the source of event IDs; nil means crypto/rand.Reader.
	Rand io.Reader
}

// Recorder writes audit events to a stream, plain (Out) or chained, and
// to chained files. It is safe for concurrent use: events are written
// whole and in the same order to every one.
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
	if cfg.Out == nil && len(cfg.Chains) == 0 {
		return nil, errors.New("audit: NewRecorder: Out or Chains is required (a Chain on os.Stdout in production)")
	}
	if slices.Contains(cfg.Chains, nil) {
		return nil, errors.New("audit: NewRecorder: a nil Chain")
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
// it, and writes it to Out and the Chains. A write error is returned, never
// dropped: to Out, or from a Chain (ErrBroken, ErrCheckpoint), all of them
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
	e.redact()
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
	var errs []error
	if r.cfg.Out != nil {
		if _, err := r.cfg.Out.Write(line); err != nil {
			errs = append(errs, fmt.Errorf("audit: writing event %s: %w", e.ID, err))
		}
	}
	for _, c := range r.cfg.Chains {
		if err := c.Append(line[:len(line)-1]); err != nil {
			errs = append(errs, err)
		}
	}
	r.cfg.Metrics.event(e.Kind, e.Outcome, len(errs) == 0)
	return errors.Join(errs...)
}

// Close closes the Chains, each of which appends its last checkpoint;
// later Records return ErrClosed. It closes neither Out nor the chains'
// writers.
func (r *Recorder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	var errs []error
	for _, c := range r.cfg.Chains {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}
