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
	// treeReads and treeEntries count how the volumes sent were read: walked whole, or
	// from a record and the change log.
	treeReads, treeEntries *prometheus.CounterVec
	running                prometheus.Gauge
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
	r.running = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "drayage_replica_syncs_running",
		Help: "Volumes owned by this node whose replicas are syncing now.",
	})
	r.treeReads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "drayage_tree_reads_total",
		Help: "Volume trees this node read, by how (walk: every entry, to send it; changes: a record and the paths the change log gives, to send it; check: every entry, to find changes the change log can't see).",
	}, []string{"how"})
	r.treeEntries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "drayage_tree_entries_read_total",
		Help: "Entries (files, directories, links) whose metadata this node read from disk, by how the tree was read (walk, changes, check).",
	}, []string{"how"})
	r.syncs.WithLabelValues("ok")
	r.syncs.WithLabelValues("failed")
	for _, how := range []string{TreeWalked, TreeFromChanges, TreeChecked} {
		r.treeReads.WithLabelValues(how)
		r.treeEntries.WithLabelValues(how)
	}
	return r
}

func (r replicaMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{r.syncs, r.syncBytes, r.treeReads, r.treeEntries, r.running}
}

// How a volume's tree was read: to send it, whole or from its record and the change log;
// or whole, to check it against its record (what a write through a shared memory map
// does makes no event).
const (
	TreeWalked      = "walk"
	TreeFromChanges = "changes"
	TreeChecked     = "check"
)

// TreeRead counts one reading of a volume's tree (how: TreeWalked, TreeFromChanges,
// TreeChecked), which read the metadata of entries entries.
func (m *Metrics) TreeRead(how string, entries int) {
	if m == nil {
		return
	}
	m.replicas.treeReads.WithLabelValues(how).Inc()
	m.replicas.treeEntries.WithLabelValues(how).Add(float64(entries))
}

// ReplicaSyncsRunning sets how many volumes owned here have their replicas syncing now.
func (m *Metrics) ReplicaSyncsRunning(n int) {
	if m == nil {
		return
	}
	m.replicas.running.Set(float64(n))
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
	"How far each replica of a volume this node owns may be behind it: 0 for a replica synced since the volume's last container left, else the time since it was last known current (its last completed sync began, or the owner confirmed it unchanged since). One series per replica of a replicated volume owned here (at most 4 per volume).",
	[]string{"volume", "replica"}, nil)

// collectReplicaLags sends the lag gauges.
func collectReplicaLags(ch chan<- prometheus.Metric, fn func(context.Context) []ReplicaLag) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, l := range fn(ctx) {
		ch <- prometheus.MustNewConstMetric(replicaLagDesc, prometheus.GaugeValue, l.Lag.Seconds(), l.Volume, l.Replica)
	}
}
