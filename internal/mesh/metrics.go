package mesh

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the mesh's Prometheus metrics, shared by the pods of a node.
// A nil *Metrics records nothing; a non-nil one is safe for concurrent use.
type Metrics struct {
	connections *prometheus.CounterVec
	bytes       *prometheus.CounterVec
	active      *prometheus.GaugeVec
	open        prometheus.Histogram
}

// NewMetrics makes the metrics and registers them with reg (the agent's
// own registry, never the global one).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		connections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kzero_mesh_connections_total",
			Help: "Connections of enrolled pods, by what was decided (outbound-tunnel, outbound-refused, outbound-passthrough, inbound-tunnel, inbound-refused, inbound-plaintext-refused, inbound-plaintext-allowed).",
		}, []string{"decision"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kzero_mesh_bytes_total",
			Help: "Bytes carried for enrolled pods, by direction (outbound: connections the pod made; inbound: connections made to it) and way (sent by the side that connected, or received by it).",
		}, []string{"direction", "way"}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kzero_mesh_active_connections",
			Help: "Connections of enrolled pods being carried now, by direction.",
		}, []string{"direction"}),
		open: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kzero_mesh_tunnel_open_seconds",
			Help:    "Time to open an outbound stream through the tunnel: the TLS handshake when no pooled connection serves, and the CONNECT.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 14), // 50 µs to about 400 ms
		}),
	}
	for _, c := range []prometheus.Collector{m.connections, m.bytes, m.active, m.open} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("mesh: registering metrics: %w", err)
		}
	}
	return m, nil
}

func (m *Metrics) decision(k EventKind) {
	if m != nil {
		m.connections.WithLabelValues(string(k)).Inc()
	}
}

func (m *Metrics) opened(d time.Duration) {
	if m != nil {
		m.open.Observe(d.Seconds())
	}
}

func (m *Metrics) carrying(direction string, delta float64) {
	if m != nil {
		m.active.WithLabelValues(direction).Add(delta)
	}
}

func (m *Metrics) carried(direction string, sent, received int64) {
	if m != nil {
		m.bytes.WithLabelValues(direction, "sent").Add(float64(sent))
		m.bytes.WithLabelValues(direction, "received").Add(float64(received))
	}
}
