package volume

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/docker/go-units"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/daemon/internal/failpoint"
	"github.com/drayage/drayage/daemon/localstore"
)

// pullOptions say how a volume is moved here.
type pullOptions struct {
	// limit is the largest volume to move (0: any size).
	limit int64
}

// Hints that end a "still being pulled" error, by who waited.
const (
	mountHint = "start the container again in a moment"
	moveHint  = "see how far it is with 'drayage volume inspect %s'"
)

// claimMove checks that a volume held by another node can move here now and claims it
// for this node (the fencing epoch goes up by one when the move commits).
func (m *Manager) claimMove(ctx context.Context, e cluster.Entry, o pullOptions) (Puller, *cluster.Claim, error) {
	name, owner := e.Volume.Name, e.Volume.Owner
	mountedHint := fmt.Sprintf("stop it there or use 'drayage volume move %s --to %s'", name, m.cfg.Node)
	p, err := m.checkSource(e, mountedHint)
	if err != nil {
		return nil, nil, err
	}
	if limit := o.limit; limit > 0 && e.Volume.Size > limit {
		return nil, nil, tell(ErrTooLarge, "volume %q on node %q holds %s, above the %s that a container start moves (DRAYAGE_DYNAMIC_LIMIT); move it first with 'drayage volume move %s --to %s'",
			name, owner, units.BytesSize(float64(e.Volume.Size)), units.BytesSize(float64(limit)), name, m.cfg.Node)
	}
	claim, _, err := m.reg.BeginMigration(ctx, name, m.cfg.Node, m.currentLease())
	if err != nil {
		return nil, nil, m.refused(ctx, name, "move", mountedHint, err)
	}
	return p, claim, nil
}

// joinPull registers the caller as waiting for the move of a volume held by another
// node to this one: it joins the pull running here, or checks and claims the volume and
// starts one (see joinJob). The caller holds the volume's lock; it calls await after
// unlocking.
func (m *Manager) joinPull(ctx context.Context, e cluster.Entry, o pullOptions) (*pullJob, error) {
	name := e.Volume.Name
	if j, err := m.joinJob(name); j != nil || err != nil {
		return j, err
	}
	if err := m.stopping(); err != nil {
		return nil, err
	}
	if err := m.replaceable(e); err != nil {
		return nil, err
	}
	p, claim, err := m.claimMove(ctx, e, o)
	if err != nil {
		return nil, err
	}
	if reused, err := m.disk.ReuseReplica(name); err != nil {
		m.log.Warn("cannot start the pull from this node's old copy; pulling it whole", "volume", name, "err", err)
	} else if reused {
		m.log.Info("pulling only what changed since this node's old copy", "volume", name, "from", e.Volume.Owner)
	}
	track := newTracker(Progress{Kind: KindMove, From: e.Volume.Owner, To: m.cfg.Node, Started: time.Now().UTC()}, m.publisher(claim))
	return m.startJob(ctx, &pullJob{key: name, src: e.Volume, claim: claim, pull: p, limit: o.limit, track: track,
		commit:   func(ctx context.Context, got Pulled) error { return m.commitMove(ctx, e, claim, got) },
		unwaited: func(ctx context.Context) { m.releaseIdle(ctx, name) },
	})
}

// committed records that the pending copy rec is the volume now, its commit done. If
// that can't be written, Reconcile does it from the record.
func (m *Manager) committed(rec localstore.Record) {
	rec.Pending = false
	if err := m.disk.Save(rec); err != nil {
		m.log.Warn("cannot record that the volume's commit here is done; Reconcile does", "volume", rec.Name, "err", err)
	}
}

// replaceable checks that a pull of the volume that record e is about may replace what
// this node holds of it: nothing, an old copy kept as a replica, or a copy of a move not
// committed. A copy of its own that the record's owner has not confirmed superseding is
// never written over. The caller holds the volume's lock.
func (m *Manager) replaceable(e cluster.Entry) error {
	rec, err := m.disk.Load(e.Volume.Name)
	if errors.Is(err, localstore.ErrNotExist) || err == nil && (rec.Replica() || rec.Pending) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("node %q: %w", m.cfg.Node, err)
	}
	return tell(ErrConflict, "node %q holds its own copy of volume %q (epoch %d), and the cluster record says node %q holds it at epoch %d; it replaces its copy only once node %q confirms it holds the volume: is it up? See node %q's log, retry in a moment",
		m.cfg.Node, e.Volume.Name, rec.Epoch, e.Volume.Owner, e.Volume.Epoch, e.Volume.Owner, m.cfg.Node)
}

// commitMove installs a pulled volume and makes this node its owner, with an unmounted
// claim that a waiting Mount takes over. The copy is installed pending, at the claim's
// epoch, and is the volume only once the commit is seen: a crash in between leaves a
// copy that Reconcile confirms or takes back by what the record says (judge.go), and
// its sender keeps the volume until this node confirms it. The caller holds the
// volume's lock.
func (m *Manager) commitMove(ctx context.Context, e cluster.Entry, claim *cluster.Claim, got Pulled) error {
	name, owner := e.Volume.Name, e.Volume.Owner
	if err := m.replaceable(e); err != nil {
		return err
	}
	rec := localstore.Record{Name: name, Options: e.Volume.Options, Created: e.Volume.Created, Epoch: claim.Epoch, Pending: true, Root: got.Root}
	failpoint.Hit("install")
	if err := m.disk.Install(rec, m.disk.StagingDir(name)); err != nil {
		return fmt.Errorf("volume %q on node %q: %w", name, m.cfg.Node, err)
	}
	failpoint.Hit("commit")
	v, mc, err := m.reg.CommitMigration(ctx, claim, got.Size, got.Root, m.currentLease(), 0)
	if errors.Is(err, cluster.ErrClaimLost) {
		// Certainly not committed: the data goes back to staging, for the retry. (Any other
		// error may hide a commit that happened; then the copy stays pending, and
		// Reconcile settles it by what the record says.)
		if uerr := m.disk.Uninstall(name); uerr != nil {
			m.log.Error("cannot take back a volume whose move was not committed; Reconcile does", "volume", name, "owner", owner, "err", uerr)
		}
	}
	if err != nil {
		return fmt.Errorf("volume %q: the move from node %q could not be committed: %w; it stays on node %q, retry", name, owner, err, owner)
	}
	failpoint.Hit("committed")
	m.committed(rec)
	m.setClaim(name, mc)
	m.log.Info("volume moved here", "volume", name, "from", owner, "epoch", v.Epoch, "bytes", got.Size)
	return nil
}

// releaseIdle drops this node's claim on a volume that no container here mounts (what a
// move leaves for a Mount that no longer waits). The caller holds the volume's lock.
func (m *Manager) releaseIdle(ctx context.Context, name string) {
	c := m.claim(name)
	if c == nil {
		return
	}
	if rec, err := m.disk.Load(name); err == nil && rec.MountCount() > 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := m.reg.Release(ctx, c); err != nil {
		m.log.Warn("cannot release the claim of a volume not mounted here; it lapses with the lease", "volume", name, "err", err)
		return
	}
	m.setClaim(name, nil)
}

// MoveResult describes a finished move.
type MoveResult struct {
	Volume string        `json:"volume"`
	From   string        `json:"from"`
	To     string        `json:"to"`
	Bytes  int64         `json:"bytes"`
	Took   time.Duration `json:"took"`
}

// Move brings a volume of any size to this node, unmounted ('drayage volume move'). A
// volume already here is left as it is. A pull of the volume already running here (for a
// Mount) is joined, not repeated. If ctx ends first, the move goes on in the background
// and Move returns ErrPulling.
func (m *Manager) Move(ctx context.Context, name string) (MoveResult, error) {
	unlock, err := m.begin(ctx, name)
	if err != nil {
		return MoveResult{}, err
	}
	e, err := m.settledEntry(ctx, name, "move")
	if err != nil {
		unlock()
		return MoveResult{}, err
	}
	res := MoveResult{Volume: name, From: e.Volume.Owner, To: m.cfg.Node}
	if e.Volume.Owner == m.cfg.Node {
		unlock()
		return res, nil
	}
	start := time.Now()
	j, err := m.joinPull(ctx, e, pullOptions{})
	unlock()
	if err != nil {
		return res, err
	}
	if err := m.await(ctx, j, fmt.Sprintf(moveHint, name)); err != nil {
		return res, err
	}
	unlock, err = m.begin(ctx, name)
	if err != nil {
		return res, err
	}
	defer unlock()
	m.releaseIdle(ctx, name)
	res.Bytes, res.Took = j.size, time.Since(start)
	return res, nil
}
