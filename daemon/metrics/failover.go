package metrics

import "github.com/prometheus/client_golang/prometheus"

// failoverMetrics count the failovers this node made and the diverged copies it kept.
type failoverMetrics struct {
	promotions *prometheus.CounterVec
	diverged   prometheus.Counter
}

// How a replica was promoted: by a Mount within the volume's max-lag, or by a user who
// accepted losing what it lacked.
const (
	PromotedAuto       = "auto"
	PromotedAcceptLoss = "accept_loss"
)

func newFailoverMetrics() failoverMetrics {
	f := failoverMetrics{
		promotions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drayage_promotions_total",
			Help: "Replicas this node promoted because their volume's owner was down, by how (auto: a Mount, within max-lag; accept_loss: drayage volume promote --accept-loss).",
		}, []string{"how"}),
		diverged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drayage_diverged_copies_total",
			Help: "Copies this node kept as a NAME-diverged-EPOCH-NODE volume: writes made here that a failover elsewhere left behind. Alert on any increase.",
		}),
	}
	f.promotions.WithLabelValues(PromotedAuto)
	f.promotions.WithLabelValues(PromotedAcceptLoss)
	return f
}

func (f failoverMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{f.promotions, f.diverged}
}

// Promoted counts one promotion of a replica this node made (how: PromotedAuto,
// PromotedAcceptLoss).
func (m *Metrics) Promoted(how string) {
	if m == nil {
		return
	}
	m.failover.promotions.WithLabelValues(how).Inc()
}

// DivergedKept counts one diverged copy this node kept.
func (m *Metrics) DivergedKept() {
	if m == nil {
		return
	}
	m.failover.diverged.Inc()
}
