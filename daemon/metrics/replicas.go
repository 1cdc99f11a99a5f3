package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ReplicaLag is how far one replica of a volume owned by this node may be behind it.
type ReplicaLag struct {
	Volume, Replica string
	Lag             time.Duration
}

// replicaMetrics are the owner's view of its volumes' replicas.
type replicaMetrics struct {
	syncs     *prometheus.CounterVec
	syncBytes prometheus.Counter
}

func newReplicaMetrics() replicaMetrics {
	r := replicaMetrics{
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drayage_replica_syncs_total",
			Help: "Replica syncs this node asked for as a volume's owner, one per replica, by result (ok, failed).",
		}, []string{"result"}),
		syncBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drayage_replica_sync_bytes_total",
			Help: "File content bytes the replica syncs that completed sent: what changed since each replica's last sync.",
		}),
	}
	r.syncs.WithLabelValues("ok")
	r.syncs.WithLabelValues("failed")
	return r
}

func (r replicaMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{r.syncs, r.syncBytes}
}

// ReplicaSynced counts one replica sync this node asked for, and what it sent.
func (m *Metrics) ReplicaSynced(ok bool, sent int64) {
	if m == nil {
		return
	}
	if !ok {
		m.replicas.syncs.WithLabelValues("failed").Inc()
		return
	}
	m.replicas.syncs.WithLabelValues("ok").Inc()
	m.replicas.syncBytes.Add(float64(sent))
}

// SetReplicaLags gives the function that lists, at scrape time, the lag of each replica
// of the volumes this node owns (nil: none). It gets the scrape's context.
func (m *Metrics) SetReplicaLags(fn func(context.Context) []ReplicaLag) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.replicaLags = fn
}

var replicaLagDesc = prometheus.NewDesc("drayage_replica_lag_seconds",
	"How far each replica of a volume this node owns may be behind it: 0 for a replica synced since the volume's last container left, else the time since its last completed sync began. One series per replica of a replicated volume owned here (at most 4 per volume).",
	[]string{"volume", "replica"}, nil)

// collectReplicaLags sends the lag gauges.
func collectReplicaLags(ch chan<- prometheus.Metric, fn func(context.Context) []ReplicaLag) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, l := range fn(ctx) {
		ch <- prometheus.MustNewConstMetric(replicaLagDesc, prometheus.GaugeValue, l.Lag.Seconds(), l.Volume, l.Replica)
	}
}
