// Package metrics is a node's Prometheus metrics: what its transfers moved and how they
// ended, how long Mount takes, its volumes by state, cluster store errors and gossip
// membership. docs/metrics.md lists every metric.
//
// A Metrics holds its own registry (never Prometheus's global one), so one process can
// run several daemons, as tests do. Its methods are safe for concurrent use, and every
// method works on a nil *Metrics and does nothing: code that records metrics needs no
// checks, and a caller that wants none passes nil.
//
// The daemon serves Handler on --metrics-addr (plain HTTP): counters and histograms are
// kept as events happen; volume and member counts are read at scrape time from the
// functions given to SetVolumeStates and SetMembers, which must be cheap (no size walks,
// no store round trips).
package metrics

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Roles of a node in a transfer.
const (
	RoleReceive = "receive"
	RoleSend    = "send"
)

// Directions of data on the wire.
const (
	Received = "received"
	Sent     = "sent"
)

// Reasons a transfer failed: the reason label of drayage_transfers_failed_total. The set
// is closed; anything else is recorded as ReasonOther.
const (
	// ReasonRefused: the sender refused to send (not the node and epoch of the volume's
	// transfer claim, the volume mounted there, not held there).
	ReasonRefused = "refused"
	// ReasonClaimLost: the transfer's claim is no longer the volume's current one (its
	// lease ended, or ownership moved on).
	ReasonClaimLost = "claim_lost"
	// ReasonPeerDown: the other node could not be reached, or the connection broke.
	ReasonPeerDown = "peer_down"
	// ReasonAborted: the other side gave up (the receiver aborted, or the sender sent an
	// error, e.g. a file changed while it was sent).
	ReasonAborted = "aborted"
	// ReasonCorrupt: content or the root hash did not verify, after retries.
	ReasonCorrupt = "corrupt"
	// ReasonHostile: the receiver refused what the sender sent (names out of the tree,
	// oversized frames, sizes above the limit...).
	ReasonHostile = "hostile"
	// ReasonChanged: files changed while they were sent (a replica sync of a mounted
	// volume); the sync tries again and sends what changed.
	ReasonChanged = "changed"
	// ReasonCanceled: this node stopped waiting (its context ended, e.g. the daemon stops).
	ReasonCanceled = "canceled"
	// ReasonOther: anything else, e.g. a local disk error.
	ReasonOther = "other"
)

var reasons = []string{ReasonRefused, ReasonClaimLost, ReasonPeerDown, ReasonAborted, ReasonCorrupt, ReasonHostile, ReasonChanged, ReasonCanceled, ReasonOther}

// Results of a Mount: the result label of drayage_mount_duration_seconds.
const (
	// MountOK: the volume is mounted.
	MountOK = "ok"
	// MountPulling: the volume was still being pulled when the Mount's budget ran out;
	// the pull goes on in the background.
	MountPulling = "pulling"
	// MountError: the Mount failed.
	MountError = "error"
)

// Reasons a node did not obey a cluster record about a volume it holds a copy of: the
// reason label of drayage_records_refused_total.
const (
	// RecordOlder: the record is older than the node's copy (a restored snapshot, a
	// forged write); the node writes it again.
	RecordOlder = "older"
	// RecordContradicts: the record contradicts the node's copy (another node at the
	// copy's epoch, or the copy in use here).
	RecordContradicts = "contradicts"
	// RecordUnconfirmed: the node the record names as the owner does not confirm it
	// holds the volume.
	RecordUnconfirmed = "unconfirmed"
)

var recordReasons = []string{RecordOlder, RecordContradicts, RecordUnconfirmed}

// Store operations: the op label of drayage_store_calls_total and
// drayage_store_errors_total.
const (
	OpGet   = "get"
	OpList  = "list"
	OpTxn   = "txn"
	OpWatch = "watch"
	OpGrant = "grant"
)

// Options configure New.
type Options struct {
	// Version is reported in drayage_build_info.
	Version string
	// Node is this node's name, reported in drayage_build_info.
	Node string
}

// Metrics is one node's metrics.
type Metrics struct {
	reg *prometheus.Registry

	transfersStarted   *prometheus.CounterVec
	transfersCompleted *prometheus.CounterVec
	transfersFailed    *prometheus.CounterVec
	transferDuration   *prometheus.HistogramVec
	bytes              *prometheus.CounterVec
	files              *prometheus.CounterVec
	mountDuration      *prometheus.HistogramVec
	storeErrors        *prometheus.CounterVec
	storeCalls         *prometheus.CounterVec
	gossipErrors       prometheus.Counter
	recordsRefused     *prometheus.CounterVec
	replicas           replicaMetrics
	failover           failoverMetrics

	mu           sync.Mutex
	volumeStates func(context.Context) map[string]int
	members      func() map[string]int
	gossipHealth func() int
	storeQuorum  func() (ok bool, role string)
	replicaLags  func(context.Context) []ReplicaLag
}

// New makes a node's metrics in a registry of their own, with the Go runtime's and the
// process's metrics beside drayage's.
func New(o Options) *Metrics {
	m := &Metrics{
		reg:      prometheus.NewRegistry(),
		replicas: newReplicaMetrics(),
		failover: newFailoverMetrics(),
		transfersStarted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drayage_transfers_started_total",
			Help: "Volume transfers started, by this node's role (receive: pulls to this node; send: transfers this node serves).",
		}, []string{"role"}),
		transfersCompleted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drayage_transfers_completed_total",
			Help: "Volume transfers completed and verified (root hashes equal), by role.",
		}, []string{"role"}),
		transfersFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drayage_transfers_failed_total",
			Help: "Volume transfers that failed, by role and reason (refused, claim_lost, peer_down, aborted, corrupt, hostile, canceled, other).",
		}, []string{"role", "reason"}),
		transferDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "drayage_transfer_duration_seconds",
			Help:    "How long volume transfers took from start to end, by role and result (completed, failed).",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 120, 300, 600, 1800, 3600},
		}, []string{"role", "result"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drayage_transfer_bytes_total",
			Help: "File content bytes that crossed the wire, by direction (received, sent); unchanged files of a delta transfer and holes of sparse files are not sent.",
		}, []string{"direction"}),
		files: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drayage_transfer_files_total",
			Help: "Files whose content crossed the wire whole, by direction (received: arrived and verified; sent: sent to the end).",
		}, []string{"direction"}),
		mountDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "drayage_mount_duration_seconds",
			Help:    "How long the engine's Mount calls took, by result (ok, pulling, error).",
			Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 120},
		}, []string{"result"}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drayage_store_errors_total",
			Help: "Cluster store calls that failed, by operation (get, list, txn, watch, grant); a missing key, a lost compare-and-swap and a caller's cancellation are not errors.",
		}, []string{"op"}),
		storeCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drayage_store_calls_total",
			Help: "Cluster store calls made, by operation (get, list, txn, watch, grant): each is a round trip to the store.",
		}, []string{"op"}),
		gossipErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drayage_gossip_errors_total",
			Help: "Errors reported by gossip (memberlist): failed probes, undecodable or unauthenticated packets, failed push/pull syncs.",
		}),
		recordsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drayage_records_refused_total",
			Help: "Cluster records this node did not obey about a volume it holds a copy of, by reason (older: older than the copy; contradicts: at odds with the copy; unconfirmed: the owner named does not confirm it). Each finding is counted when it is logged, at most every 10 minutes per volume.",
		}, []string{"reason"}),
	}
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "drayage_build_info",
		Help:        "Always 1; labelled with this node's name and drayage's version.",
		ConstLabels: prometheus.Labels{"node": o.Node, "version": o.Version},
	})
	buildInfo.Set(1)
	// The series of every role, direction and reason exist from the start at 0, so that
	// rate() and alerts see the first event.
	for _, role := range []string{RoleReceive, RoleSend} {
		m.transfersStarted.WithLabelValues(role)
		m.transfersCompleted.WithLabelValues(role)
		for _, r := range reasons {
			m.transfersFailed.WithLabelValues(role, r)
		}
	}
	for _, d := range []string{Received, Sent} {
		m.bytes.WithLabelValues(d)
		m.files.WithLabelValues(d)
	}
	for _, op := range []string{OpGet, OpList, OpTxn, OpWatch, OpGrant} {
		m.storeErrors.WithLabelValues(op)
		m.storeCalls.WithLabelValues(op)
	}
	for _, r := range recordReasons {
		m.recordsRefused.WithLabelValues(r)
	}
	m.reg.MustRegister(m.transfersStarted, m.transfersCompleted, m.transfersFailed, m.transferDuration,
		m.bytes, m.files, m.mountDuration, m.storeErrors, m.storeCalls, m.gossipErrors, m.recordsRefused, buildInfo, scrapeTime{m},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.reg.MustRegister(m.replicas.collectors()...)
	m.reg.MustRegister(m.failover.collectors()...)
	return m
}

// Registry is the registry the metrics are in, for adding more or gathering in tests.
func (m *Metrics) Registry() *prometheus.Registry {
	if m == nil {
		return nil
	}
	return m.reg
}

// Handler serves the metrics in Prometheus's text (or protobuf) format.
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return http.NotFoundHandler()
	}
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Transfer is one transfer being recorded; Started returns it.
type Transfer struct {
	m     *Metrics
	role  string
	start time.Time
}

// Started records the start of a transfer in role (RoleReceive or RoleSend). The caller
// ends it with Completed or Failed, once.
func (m *Metrics) Started(role string) Transfer {
	if m == nil {
		return Transfer{}
	}
	m.transfersStarted.WithLabelValues(role).Inc()
	return Transfer{m: m, role: role, start: time.Now()}
}

// Completed records that the transfer ended verified.
func (t Transfer) Completed() {
	if t.m == nil {
		return
	}
	t.m.transfersCompleted.WithLabelValues(t.role).Inc()
	t.m.transferDuration.WithLabelValues(t.role, "completed").Observe(time.Since(t.start).Seconds())
}

// Failed records that the transfer failed for reason (one of the Reason constants; any
// other is recorded as ReasonOther).
func (t Transfer) Failed(reason string) {
	if t.m == nil {
		return
	}
	known := false
	for _, r := range reasons {
		known = known || r == reason
	}
	if !known {
		reason = ReasonOther
	}
	t.m.transfersFailed.WithLabelValues(t.role, reason).Inc()
	t.m.transferDuration.WithLabelValues(t.role, "failed").Observe(time.Since(t.start).Seconds())
}

// Flow counts what crosses the wire in one direction. A nil *Flow counts nothing.
type Flow struct {
	bytes, files prometheus.Counter
}

// Flow returns the counters of one direction (Received or Sent), for the transfer engine
// to count as data arrives or leaves.
func (m *Metrics) Flow(direction string) *Flow {
	if m == nil {
		return nil
	}
	return &Flow{bytes: m.bytes.WithLabelValues(direction), files: m.files.WithLabelValues(direction)}
}

// Bytes counts n content bytes.
func (f *Flow) Bytes(n int) {
	if f != nil && n > 0 {
		f.bytes.Add(float64(n))
	}
}

// File counts one file whose content crossed whole.
func (f *Flow) File() {
	if f != nil {
		f.files.Inc()
	}
}

// Mount records one Mount call that took d, with result MountOK, MountPulling or
// MountError.
func (m *Metrics) Mount(d time.Duration, result string) {
	if m == nil {
		return
	}
	m.mountDuration.WithLabelValues(result).Observe(d.Seconds())
}

// StoreCall counts a cluster store call of op (one of the Op constants).
func (m *Metrics) StoreCall(op string) {
	if m == nil {
		return
	}
	m.storeCalls.WithLabelValues(op).Inc()
}

// StoreError counts a failed cluster store call of op (one of the Op constants).
func (m *Metrics) StoreError(op string) {
	if m == nil {
		return
	}
	m.storeErrors.WithLabelValues(op).Inc()
}

// RecordRefused counts a cluster record this node did not obey, by reason (one of the
// Record constants).
func (m *Metrics) RecordRefused(reason string) {
	if m == nil {
		return
	}
	m.recordsRefused.WithLabelValues(reason).Inc()
}

// GossipError counts an error gossip reported. It does not block: gossip's goroutines
// call it.
func (m *Metrics) GossipError() {
	if m == nil {
		return
	}
	m.gossipErrors.Inc()
}

// SetVolumeStates gives the function that counts this node's volumes by state at scrape
// time (nil: none). It gets the scrape's context and must be cheap.
func (m *Metrics) SetVolumeStates(fn func(context.Context) map[string]int) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.volumeStates = fn
}

// SetMembers gives the functions that count gossip members by state and tell gossip's
// health score at scrape time (nil: none, on a node running alone). They must not block.
func (m *Metrics) SetMembers(members func() map[string]int, health func() int) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.members, m.gossipHealth = members, health
}

// SetStoreQuorum gives the function that says whether the embedded store has a quorum,
// and this node's role in it.
func (m *Metrics) SetStoreQuorum(quorum func() (ok bool, role string)) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.storeQuorum = quorum
}
