package volume

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
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
	// Logger receives the manager's logs, already labelled with the node; slog.Default()
	// if nil.
	Logger *slog.Logger
	// DynamicLimit is the largest volume a Mount moves to this node (0: no limit); larger
	// ones move with 'drayage volume move'.
	DynamicLimit int64
	// KeepReplica keeps this node's copy of a volume that moved away, so that a move back
	// sends only what changed.
	KeepReplica bool
	// Metrics, if set, times every Mount.
	Metrics *metrics.Metrics
	// StagingGrace is how long the staging tree of a pull that failed is kept for the
	// next attempt to resume from, unused, before it is deleted (0: 6 hours).
	StagingGrace time.Duration
}

// Manager runs the volume operations of one node. It is safe for concurrent use;
// operations on one volume are serialised.
type Manager struct {
	cfg     Config
	log     *slog.Logger
	store   atomic.Pointer[localstore.Store] // nil until Init
	reg     *cluster.Registry                // set by Init
	readyCh chan struct{}                    // closed when Init completes
	locks   keylock.Locks

	// life ends with Close; background pulls run on it, not on the request's context.
	life   context.Context
	stop   context.CancelFunc
	jobsWG sync.WaitGroup

	mu     sync.Mutex
	lease  cluster.Lease
	claims map[string]*cluster.Claim // this node's mount claims, by volume
	puller Puller                    // nil on a node running alone
	jobs   map[string]*pullJob       // pulls to this node, running or failed unheard
	closed bool
	// marksChecked holds the volumes whose mount mark was checked since this node's
	// lease last changed; reported, when each finding about a record was last logged.
	marksChecked map[string]bool
	reported     map[string]time.Time
	// staging counts the pulls running into each staging tree, by its name.
	staging map[string]int

	receiving sync.Map // *tracker → volume name: transfers to this node running now
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
	return &Manager{cfg: cfg, log: log, readyCh: make(chan struct{}), claims: map[string]*cluster.Claim{},
		life: life, stop: stop, jobs: map[string]*pullJob{}, marksChecked: map[string]bool{}, reported: map[string]time.Time{},
		staging: map[string]int{}}
}

// Close stops the pulls running in the background and waits for them to end: each
// releases its claim, so the volume stays with its owner, and the staging dir keeps what
// arrived for the next attempt. Calls after Close start no pulls.
func (m *Manager) Close() {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.stop()
	m.jobsWG.Wait()
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
	store, err := localstore.Open(m.cfg.Root)
	if err != nil {
		return fmt.Errorf("node %q: open state dir %s: %w; check that it exists and is writable", m.cfg.Node, m.cfg.Root, err)
	}
	m.reg = reg
	m.mu.Lock()
	m.lease = lease
	m.mu.Unlock()
	recs, err := store.List()
	if err != nil {
		return fmt.Errorf("node %q: %w", m.cfg.Node, err)
	}
	inUse := make(map[string]bool)
	for _, rec := range recs {
		if rec.MountCount() == 0 {
			continue
		}
		inUse[rec.Name] = true
		if err := m.bind(store, rec); err != nil {
			m.log.Error("cannot restore mount; containers using it keep their data, new ones can't mount it until it is remounted",
				"volume", rec.Name, "err", err)
			continue
		}
		m.log.Info("restored mount", "volume", rec.Name, "mounts", rec.MountCount())
	}
	m.sweepMountDir(inUse)
	m.store.Store(store)
	close(m.readyCh)
	m.Reconcile(ctx)
	return nil
}

// SetLease replaces the node's lease (after the old one was lost) and claims every
// volume mounted here again on it.
func (m *Manager) SetLease(ctx context.Context, lease cluster.Lease) {
	m.mu.Lock()
	m.lease = lease
	m.claims = map[string]*cluster.Claim{}
	m.marksChecked = map[string]bool{}
	m.mu.Unlock()
	m.Reconcile(ctx)
}

func (m *Manager) currentLease() cluster.Lease {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lease
}

func (m *Manager) claim(name string) *cluster.Claim {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.claims[name]
}

func (m *Manager) setClaim(name string, c *cluster.Claim) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c == nil {
		delete(m.claims, name)
	} else {
		m.claims[name] = c
	}
}

// ready waits for Init to complete, as long as ctx allows. Calls wait rather than fail at
// once: the engine forgets a volume whose Get fails, so a daemon that is starting must
// not answer Get with an error it can avoid.
func (m *Manager) ready(ctx context.Context) (*localstore.Store, error) {
	select {
	case <-m.readyCh: // ready wins over a context that has ended too
		return m.store.Load(), nil
	default:
	}
	select {
	case <-m.readyCh:
		return m.store.Load(), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("node %q: %w; retry in a few seconds", m.cfg.Node, ErrNotReady)
	}
}

// begin checks the name, waits for readiness, then locks the volume for one operation.
func (m *Manager) begin(ctx context.Context, name string) (*localstore.Store, func(), error) {
	if err := ValidateName(name); err != nil {
		return nil, nil, fmt.Errorf("node %q: %w", m.cfg.Node, err)
	}
	store, err := m.ready(ctx)
	if err != nil {
		return nil, nil, err
	}
	return store, m.locks.Lock(name), nil
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
