package audit

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DecisionBuckets returns the bounds, in seconds, of the decision latency
// histogram: 250 ns to about 16 ms, by factors of four. A compiled policy
// decides in well under a microsecond to a few microseconds; a CEL
// condition or a cold cache in tens of microseconds.
func DecisionBuckets() []float64 {
	return prometheus.ExponentialBuckets(250e-9, 4, 9)
}

// Metrics are the audit pipeline's Prometheus metrics. A nil *Metrics
// records nothing, so callers need not check; a non-nil one is safe for
// concurrent use.
type Metrics struct {
	events    *prometheus.CounterVec
	errors    prometheus.Counter
	decisions *prometheus.HistogramVec
}

// NewMetrics makes the metrics and registers them with reg (never the
// global registry: pass the component's own).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kzero_audit_events_total",
			Help: "Audit events recorded, by kind and outcome.",
		}, []string{"kind", "outcome"}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kzero_audit_write_errors_total",
			Help: "Audit events whose writing to the stream or the chained file failed.",
		}),
		decisions: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kzero_decision_duration_seconds",
			Help:    "Time taken to decide an access or admission request, by kind and verdict.",
			Buckets: DecisionBuckets(),
		}, []string{"kind", "verdict"}),
	}
	for _, c := range []prometheus.Collector{m.events, m.errors, m.decisions} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("audit: registering metrics: %w", err)
		}
	}
	return m, nil
}

// ObserveDecision records that a decision of kind (KindAccess or
// KindAdmission) with verdict (allow or deny) took d.
func (m *Metrics) ObserveDecision(kind Kind, verdict Verdict, d time.Duration) {
	if m == nil {
		return
	}
	m.decisions.WithLabelValues(string(kind), string(verdict)).Observe(d.Seconds())
}

// event counts one recorded event, and a failed write.
func (m *Metrics) event(kind Kind, outcome Outcome, written bool) {
	if m == nil {
		return
	}
	m.events.WithLabelValues(string(kind), string(outcome)).Inc()
	if !written {
		m.errors.Inc()
	}
}
