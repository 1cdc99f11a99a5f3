package volume

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/docker/go-units"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/daemon/internal/keylock"
	"github.com/drayage/drayage/daemon/localstore"
	"github.com/drayage/drayage/daemon/metrics"
	"github.com/drayage/drayage/daemon/mount"
)

// States of a volume: the cluster's (idle, mounted, migrating, removing) and these.
const (
	StateIdle    = cluster.StateIdle
	StateMounted = cluster.StateMounted
	// StateUnreadable means the volume exists here but its record can't be read.
	StateUnreadable = "unreadable"
	// StateUnknown means the cluster store can't be reached to tell.
	StateUnknown = "unknown"
)

// Info is a volume as users see it (docker volume inspect, drayage volume inspect).
type Info struct {
	Name string `json:"name"`
	// Node is the node that holds the volume's data (its owner).
	Node       string            `json:"node"`
	State      string            `json:"state"`
	Mountpoint string            `json:"mountpoint,omitempty"`
	Mounts     int               `json:"mounts"`
	Size       int64             `json:"size"` // bytes; -1 where not measured (List)
	Options    map[string]string `json:"options,omitempty"`
	Created    time.Time         `json:"created"`
	// Epoch is the volume's fencing token (see package cluster).
	Epoch uint64 `json:"epoch,omitempty"`
	// Claim describes who holds the volume now, if anyone.
	Claim *ClaimInfo `json:"claim,omitempty"`
	// Problem says what is wrong with a volume in a bad state, and what to do.
	Problem string `json:"problem,omitempty"`
	// Progress is how far the volume's move (or copy) to another node has come, while it
	// runs (Get only).
	Progress *Progress `json:"progress,omitempty"`
}

// ClaimInfo is who holds a volume now.
type ClaimInfo struct {
	Node   string    `json:"node"`
	Kind   string    `json:"kind"`
	Mounts int       `json:"mounts,omitempty"`
	Since  time.Time `json:"since"`
}

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

// Puller is how the manager gets a volume from the node that holds it (the daemon's
// transfer engine over the cluster network).
type Puller interface {
	// Peer tells whether node is alive as far as gossip knows, and when it was last seen.
	Peer(node string) (alive bool, lastSeen time.Time)
	// Pull copies a volume from the node that holds it into staging, as r says.
	Pull(ctx context.Context, r PullRequest) (Pulled, error)
	// Holds asks node what it holds of volume: what a node asks before it drops its own
	// copy of a volume that moved there.
	Holds(ctx context.Context, node, volume string) (Holding, error)
	// RemovalAsked asks node whether the removal of volume at epoch was asked there: what
	// the owner asks before it deletes a volume marked for removal.
	RemovalAsked(ctx context.Context, node, volume string, epoch uint64) (bool, error)
}

// Pulled is what a pull brought.
type Pulled struct {
	// Size is the volume's size; Root its root hash (hex), verified with its sender.
	Size int64
	Root string
}

// PullRequest is one pull of a volume to this node.
type PullRequest struct {
	// Volume comes From the node that holds it, for the transfer claimed at Epoch.
	Volume, From string
	Epoch        uint64
	// Staging is where the tree is assembled; what an earlier attempt left is reused.
	Staging string
	// MaxBytes bounds the volume's size as received (0: any size): the dynamic limit,
	// for a Mount.
	MaxBytes int64
	// AllowPrivileged lets setuid files, file capabilities, trusted.* attributes and
	// devices arrive (the volume's allow-privileged option); otherwise they are stripped
	// or refused.
	AllowPrivileged bool
	// Progress, if set, hears the counts so far (Bytes, Total, Files, TotalFiles), from
	// one goroutine at a time.
	Progress func(Progress)
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

// storeErr wraps a cluster store failure in a message that says what to do.
func (m *Manager) storeErr(what string, err error) error {
	return fmt.Errorf("node %q: %s: cluster store: %w; check that the store (DRAYAGE_STORE) is reachable", m.cfg.Node, what, err)
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

// recordSize measures a volume no longer in use and records its size in the cluster,
// under the owner's epoch (refused if ownership moved on meanwhile).
func (m *Manager) recordSize(ctx context.Context, store *localstore.Store, name string, epoch uint64) {
	unlock := m.locks.Lock(name)
	defer unlock()
	size, err := store.Size(name)
	if err != nil {
		return
	}
	if err := m.reg.UpdateSize(ctx, name, m.cfg.Node, epoch, size); err != nil && !errors.Is(err, cluster.ErrStaleEpoch) {
		m.log.Warn("cannot record the volume's size in the cluster store", "volume", name, "err", err)
	}
}

// sweepMountDir removes mountpoints left from volumes that are no longer mounted.
func (m *Manager) sweepMountDir(inUse map[string]bool) {
	entries, err := os.ReadDir(m.cfg.MountDir)
	if err != nil {
		m.log.Warn("cannot read mount dir", "dir", m.cfg.MountDir, "err", err)
		return
	}
	for _, e := range entries {
		if inUse[e.Name()] {
			continue
		}
		if err := m.unbind(e.Name()); err != nil {
			m.log.Warn("cannot remove stale mountpoint", "volume", e.Name(), "err", err)
		}
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

func (m *Manager) notFound(name string) error {
	return fmt.Errorf("volume %q on node %q: %w; create it with 'docker volume create --driver drayage %s'",
		name, m.cfg.Node, ErrNotFound, name)
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

// Create makes a volume, or returns the existing volume of that name wherever in the
// cluster it lives. Creating a volume that exists with the same options succeeds; with
// other options it fails with ErrOptionsConflict.
func (m *Manager) Create(ctx context.Context, name string, raw map[string]string) error {
	store, unlock, err := m.begin(ctx, name)
	if err != nil {
		return err
	}
	defer unlock()
	opts, canon, err := ParseOptions(raw)
	if err != nil {
		return fmt.Errorf("volume %q on node %q: %w", name, m.cfg.Node, err)
	}
	e, created, err := m.reg.Create(ctx, cluster.Volume{Name: name, Owner: m.cfg.Node, Options: canon, Created: time.Now().UTC()})
	if err != nil {
		return m.storeErr("create volume "+name, err)
	}
	v := e.Volume
	if !created {
		if v.Removing {
			return fmt.Errorf("volume %q is being removed from node %q; retry once it is gone, or choose another name", name, v.Owner)
		}
		return m.checkSameOptions(v, opts, canon)
	}
	if err := store.Create(localstore.Record{Name: name, Options: canon, Created: v.Created, Epoch: v.Epoch}, opts.UID, opts.GID, opts.Mode); err != nil {
		if rmErr := m.reg.FinishRemoval(ctx, v); rmErr != nil {
			m.log.Error("cannot undo the cluster record of a volume whose creation failed", "volume", name, "err", rmErr)
		}
		return fmt.Errorf("node %q: %w", m.cfg.Node, err)
	}
	m.log.Info("created volume", "volume", name, "options", formatOptions(canon))
	return nil
}

func (m *Manager) checkSameOptions(existing cluster.Volume, want Options, wantCanon map[string]string) error {
	have, _, err := ParseOptions(existing.Options)
	if err != nil {
		return fmt.Errorf("volume %q on node %q has unreadable options: %w", existing.Name, existing.Owner, err)
	}
	if have != want {
		return fmt.Errorf("volume %q on node %q: %w: it has %s, this request has %s; create it with the same options, or remove it first",
			existing.Name, existing.Owner, ErrOptionsConflict, formatOptions(existing.Options), formatOptions(wantCanon))
	}
	return nil
}

// Remove deletes a volume and its data. It fails with ErrInUse while containers mount it
// anywhere, also on a node whose lease lapsed. The removal of a volume held by another
// node is finished by that node. Removing a volume that does not exist succeeds: there
// is nothing left to remove (the engine's contract).
func (m *Manager) Remove(ctx context.Context, name string) error {
	_, err := m.Delete(ctx, name, DeleteOptions{})
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// RemoveResult describes a removal ('drayage volume rm').
type RemoveResult struct {
	Volume string `json:"volume"`
	// Node held the volume; it deletes the data (at once if it is this node, else as soon
	// as it sees the removal).
	Node string `json:"node"`
}

// DeleteOptions say how Delete treats a volume.
type DeleteOptions struct {
	// Force removes a volume that a node whose lease lapsed still mounts ('drayage volume
	// rm --force'), for a node the operator knows is gone for good. If that node is not
	// alive either, the record goes at once; should the node ever come back with the
	// data, the volume reappears, held there: nothing is deleted on a word.
	Force bool
}

// Delete is Remove for people: a volume that does not exist is an error (ErrNotFound);
// one already being removed is not.
func (m *Manager) Delete(ctx context.Context, name string, o DeleteOptions) (RemoveResult, error) {
	res := RemoveResult{Volume: name}
	store, unlock, err := m.begin(ctx, name)
	if err != nil {
		return res, err
	}
	defer unlock()
	if rec, err := store.Load(name); err == nil && rec.MountCount() > 0 {
		return res, fmt.Errorf("volume %q is mounted by %s on node %q: %w; stop and remove the containers using it, then remove the volume",
			name, containers(rec.MountCount()), m.cfg.Node, ErrInUse)
	}
	// The removal is noted here first: the owner deletes its copy only once this node
	// confirms it asked for the removal at the record's epoch.
	e, err := m.reg.Get(ctx, name)
	switch {
	case errors.Is(err, cluster.ErrVolumeNotFound):
		return res, tell(ErrNotFound, "volume %q: no such volume in the cluster; see 'drayage volume ls'", name)
	case err != nil:
		return res, m.storeErr("remove volume "+name, err)
	}
	if err := store.NoteRemoval(name, e.Volume.Epoch); err != nil {
		return res, fmt.Errorf("node %q: %w; check the state dir, then retry", m.cfg.Node, err)
	}
	v, err := m.reg.MarkRemoving(ctx, name, cluster.RemoveOptions{By: m.cfg.Node, Force: o.Force})
	if err == nil && v.Epoch != e.Volume.Epoch {
		if err := store.NoteRemoval(name, v.Epoch); err != nil { // it moved meanwhile
			return res, fmt.Errorf("node %q: %w; check the state dir, then retry", m.cfg.Node, err)
		}
	}
	switch {
	case errors.Is(err, cluster.ErrVolumeNotFound):
		return res, tell(ErrNotFound, "volume %q: no such volume in the cluster; see 'drayage volume ls'", name)
	case errors.Is(err, cluster.ErrMountLapsed):
		return res, m.lapsed(err, "remove", fmt.Sprintf("or, if node %%q is gone for good, remove it with 'drayage volume rm --force %s'", name))
	case err != nil:
		return res, m.refused(ctx, name, "remove", "stop and remove the containers using it there, then remove the volume", err)
	}
	res.Node = v.Owner
	if v.Owner == m.cfg.Node {
		m.finishRemoval(ctx, store, v)
		return res, nil
	}
	if p := m.currentPuller(); o.Force && (p == nil || !alive(p, v.Owner)) {
		// Gone for good, the operator says, and gone as far as gossip knows: nobody else
		// will finish the removal.
		if err := m.reg.FinishRemoval(ctx, v); err != nil {
			return res, m.storeErr("remove volume "+name, err)
		}
		m.log.Warn("removed the record of a volume whose owner is gone, by force; its data stays on that node's disk", "volume", name, "owner", v.Owner)
		return res, nil
	}
	m.log.Info("marked volume for removal; its owner deletes the data", "volume", name, "owner", v.Owner)
	return res, nil
}

func alive(p Puller, node string) bool {
	ok, _ := p.Peer(node)
	return ok
}

// lapsed turns a refusal for a volume mounted on a node whose lease lapsed into the
// user's error: what happened, and what to do. what is the operation refused; orForce
// ends the sentence with its %q for the node, or is empty.
func (m *Manager) lapsed(err error, what, orForce string) error {
	var le *cluster.LapsedError
	if !errors.As(err, &le) {
		return fmt.Errorf("%w: %w", ErrInUse, err)
	}
	mk := le.Mark
	since := "its lease lapsed"
	if p := m.currentPuller(); p != nil {
		if ok, seen := p.Peer(mk.Node); !ok && !seen.IsZero() {
			since += ", and it was last seen " + units.HumanDuration(time.Since(seen)) + " ago"
		}
	}
	msg := fmt.Sprintf("cannot %s volume %q: it is mounted on node %q by %s, and node %q has stopped renewing its lease in the cluster store (%s): it is down, paused or cut off from the store, and its containers may still be writing to the volume. Start drayage on node %q again (its mounts are then known)",
		what, mk.Volume, mk.Node, containers(mk.Mounts), mk.Node, since, mk.Node)
	if orForce != "" {
		msg += ", " + fmt.Sprintf(orForce, mk.Node)
	} else {
		msg += "; the volume can move once that node is back: its data is there"
	}
	return tell(ErrInUse, "%s", msg)
}

func containers(n int) string {
	if n == 1 {
		return "1 container"
	}
	return fmt.Sprintf("%d containers", n)
}

// Mount takes one reference on the volume for the given mount ID and returns the
// mountpoint. The first reference claims the volume in the cluster and makes the bind
// mount. A volume held by another node is pulled here first, in the background: if it
// has not arrived when ctx is nearly done, Mount returns ErrPulling with the progress and
// the next Mount waits on the same pull. A failed Mount changes nothing.
func (m *Manager) Mount(ctx context.Context, name, id string) (string, error) {
	start := time.Now()
	mp, err := m.mount(ctx, name, id)
	result := metrics.MountOK
	switch {
	case errors.Is(err, ErrPulling):
		result = metrics.MountPulling
	case err != nil:
		result = metrics.MountError
	}
	m.cfg.Metrics.Mount(time.Since(start), result)
	return mp, err
}

func (m *Manager) mount(ctx context.Context, name, id string) (string, error) {
	for pulled := false; ; pulled = true {
		store, unlock, err := m.begin(ctx, name)
		if err != nil {
			return "", err
		}
		e, err := m.settledEntry(ctx, store, name, "mount")
		if err != nil {
			if pulled {
				m.releaseIdle(ctx, store, name) // what the pull left for this Mount
			}
			unlock()
			return "", err
		}
		if e.Volume.Owner == m.cfg.Node {
			mp, err := m.mountHere(ctx, store, e, id)
			if err != nil && pulled {
				m.releaseIdle(ctx, store, name) // what the pull left for this Mount
			}
			unlock()
			return mp, err
		}
		if pulled {
			unlock()
			return "", tell(ErrElsewhere, "volume %q moved on to node %q as soon as it arrived on node %q; run the container there, or retry",
				name, e.Volume.Owner, m.cfg.Node)
		}
		j, err := m.joinPull(ctx, store, e, pullOptions{limit: m.cfg.DynamicLimit})
		unlock()
		if err != nil {
			return "", err
		}
		if err := m.await(ctx, j, mountHint); err != nil {
			return "", err
		}
	}
}

// mountHere takes one reference on a volume this node holds, as record e says. The
// caller holds the lock.
func (m *Manager) mountHere(ctx context.Context, store *localstore.Store, e cluster.Entry, id string) (string, error) {
	name := e.Volume.Name
	rec, err := store.Load(name)
	if err != nil {
		return "", fmt.Errorf("volume %q is held by node %q in the cluster record, but its data is not in %s: %w; check the state dir",
			name, m.cfg.Node, m.cfg.Root, err)
	}
	if rec, err = m.current(store, rec, e); err != nil {
		return "", err
	}
	count := rec.MountCount() + 1
	c, err := m.reg.ClaimMount(ctx, name, m.cfg.Node, m.currentLease(), count)
	if err != nil {
		if errors.Is(err, cluster.ErrRemoving) {
			return "", fmt.Errorf("volume %q on node %q: %w; retry when it is done", name, m.cfg.Node, err)
		}
		return "", m.refused(ctx, name, "mount", "retry when it is done", err)
	}
	undoClaim := func() {
		if count == 1 {
			_ = m.reg.Release(ctx, c)
			m.setClaim(name, nil)
		} else if c, err := m.reg.ClaimMount(ctx, name, m.cfg.Node, m.currentLease(), count-1); err == nil {
			m.setClaim(name, c)
		}
	}
	m.setClaim(name, c)
	if count == 1 {
		if err := m.bind(store, rec); err != nil {
			undoClaim()
			return "", fmt.Errorf("volume %q on node %q: %w; check the daemon log and that drayage has CAP_SYS_ADMIN", name, m.cfg.Node, err)
		}
	}
	next := rec.Clone()
	if next.Mounts == nil {
		next.Mounts = make(map[string]int)
	}
	next.Mounts[id]++
	if err := store.Save(next); err != nil {
		if count == 1 {
			_ = m.unbind(name)
		}
		undoClaim()
		return "", fmt.Errorf("node %q: %w", m.cfg.Node, err)
	}
	m.log.Info("mounted volume", "volume", name, "id", id, "mounts", next.MountCount())
	return m.mountpoint(name), nil
}

// Unmount drops one reference of the given mount ID; the last reference removes the bind
// mount and releases the claim. Unmounting an ID or a volume that is not mounted does
// nothing. A store that can't be reached does not fail it: Reconcile settles the claim.
func (m *Manager) Unmount(ctx context.Context, name, id string) error {
	store, unlock, err := m.begin(ctx, name)
	if err != nil {
		return err
	}
	defer unlock()
	rec, err := store.Load(name)
	if errors.Is(err, localstore.ErrNotExist) {
		m.log.Debug("unmount of unknown volume ignored", "volume", name, "id", id)
		return nil
	}
	if err != nil {
		return fmt.Errorf("node %q: %w", m.cfg.Node, err)
	}
	if rec.Mounts[id] == 0 {
		m.log.Debug("unmount of unknown mount ID ignored", "volume", name, "id", id)
		return nil
	}
	next := rec.Clone()
	next.Mounts[id]--
	if next.Mounts[id] == 0 {
		delete(next.Mounts, id)
	}
	count := next.MountCount()
	if count == 0 {
		if err := m.unbind(name); err != nil {
			return fmt.Errorf("volume %q on node %q: %w; the volume stays mounted, check what holds %s busy", name, m.cfg.Node, err, m.mountpoint(name))
		}
	}
	if err := store.Save(next); err != nil {
		return fmt.Errorf("node %q: %w", m.cfg.Node, err)
	}
	switch c := m.claim(name); {
	case count == 0 && c != nil:
		if err := m.reg.Release(ctx, c); err != nil {
			m.log.Warn("cannot release the volume's claim now; will retry", "volume", name, "err", err)
		} else {
			m.setClaim(name, nil)
		}
		go m.recordSize(context.WithoutCancel(ctx), store, name, c.Epoch)
	case count > 0:
		if c, err := m.reg.ClaimMount(ctx, name, m.cfg.Node, m.currentLease(), count); err != nil {
			m.log.Warn("cannot update the volume's claim now; will retry", "volume", name, "err", err)
		} else {
			m.setClaim(name, c)
		}
	}
	m.log.Info("unmounted volume", "volume", name, "id", id, "mounts", count)
	return nil
}

// Path returns the mountpoint of a volume mounted here, or "" if it is not.
func (m *Manager) Path(ctx context.Context, name string) (string, error) {
	store, unlock, err := m.begin(ctx, name)
	if err != nil {
		return "", err
	}
	defer unlock()
	rec, err := store.Load(name)
	if errors.Is(err, localstore.ErrNotExist) {
		if _, err := m.entry(ctx, name, "find"); err != nil {
			return "", err
		}
		return "", nil // held elsewhere, not mounted here
	}
	if err != nil {
		return "", fmt.Errorf("node %q: %w", m.cfg.Node, err)
	}
	if rec.MountCount() == 0 {
		return "", nil
	}
	return m.mountpoint(name), nil
}

// Get describes one volume, with its size measured if it is held here. It fails only for
// a volume that does not exist (the engine forgets a volume whose Get fails): a volume
// whose records can't be read, here or in the cluster store, is described with the
// problem instead. A volume on its way to a node has its Progress.
func (m *Manager) Get(ctx context.Context, name string) (Info, error) {
	return m.get(ctx, name, true)
}

// Lookup is Get without measuring the volume's size: cheap enough to poll.
func (m *Manager) Lookup(ctx context.Context, name string) (Info, error) {
	return m.get(ctx, name, false)
}

func (m *Manager) get(ctx context.Context, name string, measure bool) (Info, error) {
	store, unlock, err := m.begin(ctx, name)
	if err != nil {
		return Info{}, err
	}
	defer unlock()
	rec, localErr := store.Load(name)
	e, err := m.entry(ctx, name, "read")
	switch {
	case errors.Is(err, ErrNotFound):
		return Info{}, err
	case err != nil:
		// The store can't say; never report "no such volume" for that.
		m.log.Warn("cannot read volume from the cluster store", "volume", name, "err", err)
		info := Info{Name: name, Node: "", State: StateUnknown, Size: -1, Problem: err.Error()}
		if localErr == nil {
			info = m.localInfo(rec)
			info.Problem = err.Error()
		}
		return info, nil
	}
	if e.Claim == nil { // a mount on a node whose lease lapsed shows as what it is
		if mark, err := m.reg.Mark(ctx, name); err == nil {
			e.Mark = mark
		}
	}
	info := m.clusterInfo(e)
	if c := e.Claim; c != nil && c.Kind != cluster.ClaimMount {
		info.Progress = m.progress(ctx, c)
	}
	if e.Volume.Owner == m.cfg.Node {
		switch {
		case errors.Is(localErr, localstore.ErrNotExist):
			info.Problem = fmt.Sprintf("the cluster record says node %q holds this volume, but its data is not in %s", m.cfg.Node, m.cfg.Root)
		case localErr != nil:
			m.log.Error("cannot read volume record", "volume", name, "err", localErr)
			info.State, info.Problem = StateUnreadable, localErr.Error()+"; check the state dir and the daemon log"
		default:
			if rec.MountCount() > 0 {
				info.Mountpoint = m.mountpoint(name)
			}
			if !measure {
				break
			}
			if info.Size, err = store.Size(name); err != nil {
				m.log.Warn("cannot measure volume", "volume", name, "err", err)
				info.Size = -1
			}
		}
	}
	return info, nil
}

// List describes every volume in the cluster, sorted by name; sizes are not measured.
// If the cluster store can't be reached it lists the volumes held here.
func (m *Manager) List(ctx context.Context) ([]Info, error) {
	store, err := m.ready(ctx)
	if err != nil {
		return nil, err
	}
	entries, err := m.reg.List(ctx)
	if err != nil {
		m.log.Warn("cannot list volumes in the cluster store; listing the ones held here", "err", err)
		recs, lerr := store.List()
		if lerr != nil {
			return nil, fmt.Errorf("node %q: %w", m.cfg.Node, lerr)
		}
		infos := make([]Info, 0, len(recs))
		for _, rec := range recs {
			info := m.localInfo(rec)
			info.Problem = m.storeErr("list volumes", err).Error()
			infos = append(infos, info)
		}
		return infos, nil
	}
	infos := make([]Info, 0, len(entries))
	for _, e := range entries {
		if e.Volume.Removing {
			continue
		}
		info := m.clusterInfo(e)
		if e.Volume.Owner == m.cfg.Node && info.Mounts > 0 {
			info.Mountpoint = m.mountpoint(e.Volume.Name)
		}
		infos = append(infos, info)
	}
	return infos, nil
}

// LocalStates counts, for metrics, the volumes whose data is on this node by state
// (StateMounted, StateIdle; a replica kept of a volume that moved away is idle) and the
// pulls to this node that are running ("pulling"). It reads only this node's records: no
// cluster store, no sizes. It returns nil until Init has completed.
func (m *Manager) LocalStates(context.Context) map[string]int {
	select {
	case <-m.readyCh:
	default:
		return nil
	}
	recs, err := m.store.Load().List()
	if err != nil {
		return nil
	}
	counts := map[string]int{StateMounted: 0, StateIdle: 0, "pulling": 0}
	for _, rec := range recs {
		if rec.MountCount() > 0 {
			counts[StateMounted]++
		} else {
			counts[StateIdle]++
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, j := range m.jobs {
		select {
		case <-j.done: // a failure kept for the next caller
		default:
			counts["pulling"]++
		}
	}
	return counts
}

func (m *Manager) clusterInfo(e cluster.Entry) Info {
	v := e.Volume
	info := Info{
		Name:    v.Name,
		Node:    v.Owner,
		State:   e.State(),
		Size:    v.Size,
		Options: v.Options,
		Created: v.Created,
		Epoch:   v.Epoch,
	}
	if c := e.Claim; c != nil {
		info.Claim = &ClaimInfo{Node: c.Node, Kind: c.Kind, Mounts: c.Mounts, Since: c.Since}
		if c.Kind == cluster.ClaimMount {
			info.Mounts = c.Mounts
		}
	} else if mk := e.Mark; mk != nil {
		info.Mounts = mk.Mounts
		info.Problem = fmt.Sprintf("mounted on node %q by %s, but that node stopped renewing its lease in the cluster store: it is down, paused or cut off from the store; start drayage there again",
			mk.Node, containers(mk.Mounts))
	}
	if info.Size == 0 {
		info.Size = -1 // not measured yet
	}
	return info
}

// localInfo describes a volume from this node's disk alone.
func (m *Manager) localInfo(rec localstore.Record) Info {
	info := Info{
		Name:    rec.Name,
		Node:    m.cfg.Node,
		State:   StateIdle,
		Mounts:  rec.MountCount(),
		Size:    -1,
		Options: rec.Options,
		Created: rec.Created,
	}
	if info.Mounts > 0 {
		info.State = StateMounted
		info.Mountpoint = m.mountpoint(rec.Name)
	}
	return info
}

func (m *Manager) mountpoint(name string) string { return filepath.Join(m.cfg.MountDir, name) }

// bind makes the volume's mountpoint show its data, if it does not already: nosuid,nodev
// unless the volume allows privileged content.
func (m *Manager) bind(store *localstore.Store, rec localstore.Record) error {
	name := rec.Name
	mp := m.mountpoint(name)
	if err := os.MkdirAll(mp, 0o755); err != nil {
		return fmt.Errorf("create mountpoint: %w", err)
	}
	mounted, err := m.cfg.Mounter.Mounted(mp)
	if err != nil {
		return err
	}
	if mounted {
		return nil
	}
	if err := m.cfg.Mounter.Bind(store.DataDir(name), mp, mount.Options{Privileged: AllowsPrivileged(rec.Options)}); err != nil {
		_ = os.Remove(mp)
		return err
	}
	return nil
}

// unbind removes the volume's bind mount and mountpoint.
func (m *Manager) unbind(name string) error {
	mp := m.mountpoint(name)
	mounted, err := m.cfg.Mounter.Mounted(mp)
	if err != nil {
		return err
	}
	if mounted {
		if err := m.cfg.Mounter.Unbind(mp); err != nil {
			return err
		}
	}
	if err := os.Remove(mp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove mountpoint: %w", err)
	}
	return nil
}

// SendDir authorizes sending a volume to node for a migration or a copy at epoch and
// returns the directory to send from. Only the owner sends, only to the node and epoch
// named in the volume's migration or copy claim, and never while containers here mount
// the volume.
func (m *Manager) SendDir(ctx context.Context, name, node string, epoch uint64) (string, error) {
	store, unlock, err := m.begin(ctx, name)
	if err != nil {
		return "", err
	}
	defer unlock()
	if err := m.reg.CheckTransfer(ctx, name, node, epoch); err != nil {
		return "", fmt.Errorf("node %q: %w", m.cfg.Node, err)
	}
	e, err := m.entry(ctx, name, "send")
	if err != nil {
		return "", err
	}
	if e.Volume.Owner != m.cfg.Node {
		return "", fmt.Errorf("volume %q is held by node %q, not %q: %w", name, e.Volume.Owner, m.cfg.Node, ErrElsewhere)
	}
	rec, err := store.Load(name)
	if err != nil {
		return "", fmt.Errorf("volume %q on node %q: %w", name, m.cfg.Node, err)
	}
	// Only the copy the record names, at its epoch, is sent: never an older one the
	// record was rolled back to, nor one of a move not yet committed.
	if rec, err = m.current(store, rec, e); err != nil {
		return "", err
	}
	if n := rec.MountCount(); n > 0 {
		return "", fmt.Errorf("volume %q is mounted by %s on node %q: %w; stop them there first", name, containers(n), m.cfg.Node, ErrInUse)
	}
	return store.DataDir(name), nil
}
