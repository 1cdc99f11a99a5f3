package volume

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/daemon/internal/keylock"
	"github.com/drayage/drayage/daemon/localstore"
	"github.com/drayage/drayage/daemon/metrics"
	"github.com/drayage/drayage/daemon/mount"
)

// Config configures a Manager.
type Config struct {
	// Node is this node's name, used in errors and volume info.
	Node string
	// Root is the state dir that holds volume data and records.
	Root string
	// MountDir is where volumes are bind-mounted for the engine.
	MountDir string
	// Mounter makes the bind mounts; mount.Bind{} in production.
	Mounter mount.Mounter
	// MountPropagated says MountDir is a managed plugin's propagated mount: a Mount
	// whose bind the engine's namespace does not show is refused (checkPropagated).
	MountPropagated bool
	// Logger receives the manager's logs, already labelled with the node; slog.Default()
	// if nil.
	Logger *slog.Logger
	// DynamicLimit is the largest volume a Mount moves to this node (0: no limit); larger
	// ones move with 'drayage volume move'.
	DynamicLimit int64
	// KeepReplica keeps this node's copy of a volume that moved away, so that a move back
	// sends only what changed.
	KeepReplica bool
	// Replicas is how many copies a volume created without the replicas option keeps
	// (DRAYAGE_REPLICAS; 0 or 1: only its owner's).
	Replicas int
	// SyncInterval is how soon a change to a mounted replicated volume reaches its
	// replicas, unless the volume's sync-interval option says otherwise
	// (DRAYAGE_SYNC_INTERVAL; 0: 30s).
	SyncInterval time.Duration
	// ReplicaReplaceAfter is how long a replica's node may be down before another node
	// takes its place (DRAYAGE_REPLICA_REPLACE_AFTER; 0: 10m).
	ReplicaReplaceAfter time.Duration
	// MaxLag is how far behind a replica may be for a Mount to promote it when its
	// volume's owner is down, unless the volume's max-lag option says otherwise
	// (DRAYAGE_MAX_LAG; 0: 5m; negative: never without --accept-loss).
	MaxLag time.Duration
	// TreeRoot, if set, hashes the tree at a directory as a transfer would
	// (transfer.TreeRoot): what a node compares with the root hash of a replica promoted
	// in place of its copy. Without it, a former owner's copy is treated like any old one.
	TreeRoot func(ctx context.Context, dir string) (string, error)
	// Seeder fills volumes created with -o from=URL (seed.go); without it they can't be
	// filled.
	Seeder Seeder
	// Metrics, if set, times every Mount.
	Metrics *metrics.Metrics
	// StagingGrace is how long the staging tree of a pull that failed is kept for the
	// next attempt to resume from, unused, before it is deleted (0: 6 hours).
	StagingGrace time.Duration
}

// Manager runs the volume operations of one node. It is safe for concurrent use;
// operations on one volume are serialised.
//
// Synchronisation, all of it:
//   - locks: one lock per volume, held for the length of one operation on it (begin);
//     a background pull takes it only to install and commit. Whatever reads and writes
//     a volume's data, its record on disk or its cluster record holds it.
//   - mu: guards the small in-memory state below it (the lease, the puller, each
//     volume's local state, the reported findings); never held across I/O.
//   - ready: closed once Init has opened the state dir; disk and reg are set before it
//     closes and never change after, so they are read without a lock once it has.
//   - jobs: counts the goroutines the manager started (pulls, size recorders); Close
//     cancels life and waits for them.
type Manager struct {
	cfg   Config
	log   *slog.Logger
	locks keylock.Locks
	ready chan struct{}
	disk  *localstore.Store // set by Init
	reg   *cluster.Registry // set by Init

	// life ends with Close; background work runs on it, not on a request's context.
	life context.Context
	stop context.CancelFunc
	jobs sync.WaitGroup

	mu     sync.Mutex
	closed bool
	lease  cluster.Lease
	puller Puller // nil on a node running alone
	// changes tells which volumes changed (nil: no tracking; each sync walks).
	changes Changes
	vols    map[string]*local // what this node keeps in memory about each volume
	// reported holds when each finding about a record was last logged.
	reported map[string]time.Time
	// restored names the volumes whose mounts this run restored from an earlier one and
	// that no Mount or Unmount touched since: after a crash of the engine too, nothing
	// may use them any more (restoredMounts).
	restored map[string]bool
	// repl is the schedule of the syncs of the replicas of volumes owned here, with its
	// own lock (replicate.go).
	repl *replication
}

// SetPuller lets Mount move volumes here from other nodes.
func (m *Manager) SetPuller(p Puller) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.puller = p
}

func (m *Manager) currentPuller() Puller {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.puller
}

// NewManager returns a Manager that answers ErrNotReady until Init completes.
func NewManager(cfg Config) *Manager {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	life, stop := context.WithCancel(context.Background())
	return &Manager{cfg: cfg, log: log, ready: make(chan struct{}), life: life, stop: stop,
		vols: map[string]*local{}, reported: map[string]time.Time{}, restored: map[string]bool{}, repl: newReplication()}
}

// Close stops the pulls running in the background and waits for them, and for every
// other goroutine the manager started, to end: each pull releases its claim, so the
// volume stays with its owner, and the staging dir keeps what arrived for the next
// attempt. Calls after Close start no pulls.
func (m *Manager) Close() {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.stop()
	m.jobs.Wait()
}

// goBackground runs f on the manager's lifetime, as a goroutine Close waits for; it
// returns false, and runs nothing, once Close has been called.
func (m *Manager) goBackground(f func(ctx context.Context)) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	m.jobs.Add(1)
	go func() {
		defer m.jobs.Done()
		f(m.life)
	}()
	return true
}

// stopping fails once Close has been called: no new pull starts then.
func (m *Manager) stopping() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return fmt.Errorf("node %q: drayage is stopping: %w; retry in a few seconds", m.cfg.Node, ErrNotReady)
	}
	return nil
}

// Node is the name of the node this manager runs on.
func (m *Manager) Node() string { return m.cfg.Node }

// Init opens the state dir, brings it and the cluster record into agreement, and
// restores the bind mounts and claims of volumes that were mounted when the daemon last
// stopped. lease is the node's lease; mount claims live on it.
func (m *Manager) Init(ctx context.Context, reg *cluster.Registry, lease cluster.Lease) error {
	if err := os.MkdirAll(m.cfg.MountDir, 0o755); err != nil {
		return fmt.Errorf("node %q: create mount dir %s: %w", m.cfg.Node, m.cfg.MountDir, err)
	}
	disk, err := localstore.Open(m.cfg.Root)
	if err != nil {
		return fmt.Errorf("node %q: open state dir %s: %w; check that it exists and is writable", m.cfg.Node, m.cfg.Root, err)
	}
	m.disk, m.reg = disk, reg
	m.mu.Lock()
	m.lease = lease
	m.mu.Unlock()
	recs, err := disk.List()
	if err != nil {
		return fmt.Errorf("node %q: %w", m.cfg.Node, err)
	}
	inUse := make(map[string]bool)
	for _, rec := range recs {
		if rec.MountCount() == 0 {
			continue
		}
		inUse[rec.Name] = true
		if err := m.bind(rec); err != nil {
			m.log.Error("cannot restore mount; containers using it keep their data, new ones can't mount it until it is remounted",
				"volume", rec.Name, "err", err)
			continue
		}
		m.log.Info("restored mount", "volume", rec.Name, "mounts", rec.MountCount())
		m.mu.Lock()
		m.restored[rec.Name] = true
		m.mu.Unlock()
	}
	m.sweepMountDir(inUse)
	if ids := restoredIDs(recs, m.restored); len(ids) > 0 {
		m.goBackground(func(ctx context.Context) { m.watchRestoredMounts(ctx, ids) })
	}
	m.attend(ctx, lease)
	close(m.ready)
	m.Reconcile(ctx)
	m.scheduleOwned(recs)
	m.goBackground(m.replicate)
	return nil
}

// SetLease replaces the node's lease (after the old one was lost) and claims every
// volume mounted here again on it.
func (m *Manager) SetLease(ctx context.Context, lease cluster.Lease) {
	m.mu.Lock()
	m.lease = lease
	for name, v := range m.vols {
		v.claim, v.markChecked = nil, false
		m.tidy(name, v)
	}
	m.mu.Unlock()
	m.attend(ctx, lease)
	m.Reconcile(ctx)
}

// restoredMounts reports whether volume name's mounts were restored from an earlier run
// of the daemon and untouched since.
func (m *Manager) restoredMounts(name string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.restored[name]
}

// mountsSeen notes a Mount or Unmount of volume name in this run.
func (m *Manager) mountsSeen(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.restored, name)
}

// attend puts this node's alive key on its lease: while it stands, no replica of a
// volume held here is promoted elsewhere (failover.go).
func (m *Manager) attend(ctx context.Context, lease cluster.Lease) {
	if err := m.reg.Attend(ctx, m.cfg.Node, lease); err != nil {
		m.log.Warn("cannot record this node's lease in the cluster store; replicas of its volumes may be promoted elsewhere while it runs, and its copies kept as diverged", "node", m.cfg.Node,
			"err", err)
	}
}

func (m *Manager) currentLease() cluster.Lease {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lease
}

// waitReady waits for Init to complete, as long as ctx allows. Calls wait rather than
// fail at once: the engine forgets a volume whose Get fails, so a daemon that is
// starting must not answer Get with an error it can avoid.
func (m *Manager) waitReady(ctx context.Context) error {
	select {
	case <-m.ready: // ready wins over a context that has ended too
		return nil
	default:
	}
	select {
	case <-m.ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("node %q: %w; retry in a few seconds", m.cfg.Node, ErrNotReady)
	}
}

// begin checks the name, waits for readiness, then locks the volume for one operation.
func (m *Manager) begin(ctx context.Context, name string) (unlock func(), err error) {
	if err := ValidateName(name); err != nil {
		return nil, fmt.Errorf("node %q: %w", m.cfg.Node, err)
	}
	if err := m.waitReady(ctx); err != nil {
		return nil, err
	}
	return m.locks.Lock(name), nil
}

// entry reads a volume's cluster record, turning "no record" into ErrNotFound.
func (m *Manager) entry(ctx context.Context, name, what string) (cluster.Entry, error) {
	e, err := m.reg.Get(ctx, name)
	if errors.Is(err, cluster.ErrVolumeNotFound) {
		return e, m.notFound(name)
	}
	if err != nil {
		return e, m.storeErr(what+" volume "+name, err)
	}
	if e.Volume.Removing {
		return e, fmt.Errorf("volume %q is being removed from node %q: %w; it is gone once that node has deleted its data",
			name, e.Volume.Owner, ErrNotFound)
	}
	return e, nil
}
