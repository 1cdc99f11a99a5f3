package volume

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/daemon/localstore"
	"github.com/drayage/drayage/daemon/metrics"
)

// Reconcile makes the cluster agree with this node's disk: volumes mounted here are
// claimed with their current count, claims of volumes no longer mounted are released,
// removals of volumes held here are finished, and each copy is settled against its
// record (judge.go). It repairs what a store outage or a lost lease left behind; the
// daemon runs it periodically.
func (m *Manager) Reconcile(ctx context.Context) {
	if err := m.waitReady(ctx); err != nil {
		return
	}
	recs, err := m.disk.List()
	if err != nil {
		m.log.Warn("reconcile: cannot list volumes", "err", err)
		return
	}
	var owned []localstore.Record
	for _, rec := range recs {
		if ctx.Err() != nil {
			return
		}
		if m.reconcileOne(ctx, rec.Name) {
			owned = append(owned, rec)
		}
	}
	m.healReplicas(ctx, owned)
	m.sweepStaging()
	if err := m.disk.EmptyTrash(); err != nil {
		m.log.Warn("cannot delete the old trees of volumes that moved or were replaced; check the state dir's trash/", "err", err)
	}
}

// defaultStagingGrace is how long an unused staging tree is kept by default.
const defaultStagingGrace = 6 * time.Hour

// sweepStaging deletes the staging trees of pulls that failed and were not tried again
// within the grace period (StagingGrace).
func (m *Manager) sweepStaging() {
	grace := m.cfg.StagingGrace
	if grace <= 0 {
		grace = defaultStagingGrace
	}
	// A replica's staging tree is its next sync's start: it stays with the replica.
	swept, err := m.disk.SweepStaging(grace, func(name string) bool {
		rec, err := m.disk.Load(name)
		return m.stagingInUse(name) || err == nil && rec.Replica()
	})
	for _, name := range swept {
		m.log.Info("deleted the staging of a pull not tried again", "volume", name, "unused_for", grace)
	}
	if err != nil {
		m.log.Warn("cannot delete the staging of a pull not tried again", "err", err)
	}
}

// reconcileOne settles this node's copy of a volume against its record, and reports
// whether the record says this node holds the volume, at its copy's epoch.
func (m *Manager) reconcileOne(ctx context.Context, name string) (owned bool) {
	unlock := m.locks.Lock(name)
	defer unlock()
	rec, err := m.disk.Load(name)
	if err != nil {
		return false
	}
	e, err := m.reg.Get(ctx, name)
	switch {
	case errors.Is(err, cluster.ErrVolumeNotFound):
		m.settle(ctx, rec, nil)
	case err != nil:
		m.log.Warn("reconcile: cannot read volume from the cluster store", "volume", name, "err", err)
	default:
		m.settle(ctx, rec, &e)
		return e.Volume.Owner == m.cfg.Node && !e.Volume.Removing
	}
	return false
}

// settle acts on what judge decides for this node's copy rec of a volume, given its
// record e (nil: none). The caller holds the volume's lock.
func (m *Manager) settle(ctx context.Context, rec localstore.Record, e *cluster.Entry) {
	name := rec.Name
	j, why := judge(m.cfg.Node, rec, e)
	switch j {
	case ownIt:
		m.keepClaims(ctx, rec, *e)
	case adoptEpoch, confirmPending:
		rec, err := m.current(rec, *e)
		if err != nil {
			m.log.Warn("cannot settle this node's copy; will retry", "volume", name, "err", err)
			return
		}
		m.keepClaims(ctx, rec, *e)
	case register:
		if e, ok := m.register(ctx, rec); ok {
			m.keepClaims(ctx, rec, e)
		}
	case reclaim:
		m.report(name, metrics.RecordOlder, why+fmt.Sprintf("; not obeyed: node %q holds the newest copy and writes the record again (check how the store came to hold it)", m.cfg.Node),
			"record_epoch", e.Volume.Epoch, "copy_epoch", rec.Epoch)
		if _, err := m.reg.Reclaim(ctx, e.Volume, m.cfg.Node, rec.Epoch, rec.Root); err != nil {
			m.log.Warn("cannot write the record of a volume again; will retry", "volume", name, "err", err)
			return
		}
		m.log.Warn("wrote the record of a volume again from this node's newer copy", "volume", name, "epoch", rec.Epoch)
	case adoptPromotion:
		rec, err := m.adopt(rec, e.Volume)
		if err != nil {
			m.log.Warn("cannot take over a promoted replica; will retry", "volume", name, "node", m.cfg.Node, "err", err)
			return
		}
		m.keepClaims(ctx, rec, *e)
	case proveMoved:
		if m.diverged(ctx, rec, e.Volume) {
			return
		}
		m.dropIfConfirmed(ctx, rec, e.Volume)
	case revertPending:
		if err := m.disk.Uninstall(name); err != nil {
			m.log.Warn("cannot take back a copy whose move was not committed; will retry", "volume", name, "err", err)
			return
		}
		m.log.Warn("took back a copy whose move here was not committed; its files wait in staging for the next try", "volume", name,
			"epoch", rec.Epoch, "owner", e.Volume.Owner)
	case removeReplica:
		if rec.MountCount() == 0 && !m.stagingInUse(name) {
			m.deleteCopy(name, "deleted this node's old copy of a removed volume", "removed_at", e.Volume.Epoch)
			m.disk.DropStaging(name) // a replica's next sync's start
		}
	case conflict:
		m.report(name, metrics.RecordContradicts, why+fmt.Sprintf("; not obeyed: node %q keeps its copy in %s and does not use it. Compare it with the other (drayage volume inspect %s), keep what you need, then delete this directory",
			m.cfg.Node, m.disk.DataDir(name), name), "copy_epoch", rec.Epoch)
	case orphan:
		m.report(name, "", why)
	}
}

// current checks that this node's copy rec is the volume that record e says this node
// holds, at its epoch, settling at once what can be (a move's commit seen, a copy from
// before epochs were recorded). The caller holds the volume's lock.
func (m *Manager) current(rec localstore.Record, e cluster.Entry) (localstore.Record, error) {
	j, why := judge(m.cfg.Node, rec, &e)
	switch j {
	case ownIt:
		return rec, nil
	case adoptEpoch:
		rec.Epoch = e.Volume.Epoch
	case confirmPending:
		rec.Pending = false
	case adoptPromotion:
		return m.adopt(rec, e.Volume)
	default:
		if why == "" {
			why = fmt.Sprintf("node %q's copy of volume %q (epoch %d) is not the one the record names (node %q, epoch %d)",
				m.cfg.Node, rec.Name, rec.Epoch, e.Volume.Owner, e.Volume.Epoch)
		}
		return rec, tell(ErrConflict, "%s; node %q does not use its copy until that is settled: see its log, retry in a moment", why, m.cfg.Node)
	}
	if err := m.disk.Save(rec); err != nil {
		return rec, fmt.Errorf("node %q: %w", m.cfg.Node, err)
	}
	if j == adoptEpoch {
		m.log.Info("recorded the epoch of a copy kept from before epochs were recorded", "volume", rec.Name, "epoch", rec.Epoch)
	} else {
		m.log.Info("the move of a volume here was committed", "volume", rec.Name, "epoch", rec.Epoch)
	}
	return rec, nil
}

// settledEntry reads a volume's record, as entry does, but first settles this node's
// copy against it if judge says that changes what the record says or what the copy is
// (a record to write again, a copy to drop, a move's commit to confirm or take back).
// The caller holds the volume's lock.
func (m *Manager) settledEntry(ctx context.Context, name, what string) (cluster.Entry, error) {
	e, err := m.entry(ctx, name, what)
	rec, lerr := m.disk.Load(name)
	if lerr != nil {
		return e, err
	}
	var ep *cluster.Entry
	switch {
	case err == nil:
		ep = &e
	case !errors.Is(err, ErrNotFound) || e.Volume.Removing:
		return e, err
	}
	switch j, _ := judge(m.cfg.Node, rec, ep); j {
	case ownIt, keepReplica, conflict, orphan, awaitPending:
		return e, err
	}
	m.settle(ctx, rec, ep)
	return m.entry(ctx, name, what)
}

// keepClaims makes the cluster's claim of a volume held here match its mounts here, and
// finishes its removal once nothing mounts it. The caller holds the volume's lock.
func (m *Manager) keepClaims(ctx context.Context, rec localstore.Record, e cluster.Entry) {
	name := rec.Name
	n := rec.MountCount()
	if e.Volume.Removing && n == 0 {
		if m.removalConfirmed(ctx, e.Volume) {
			m.finishRemoval(ctx, e.Volume)
		}
		return
	}
	if m.keepFilling(ctx, rec, e) {
		return
	}
	mine := e.Claim != nil && e.Claim.Kind == cluster.ClaimMount && e.Claim.Node == m.cfg.Node
	held := m.claim(name) // read once: SetLease may drop it meanwhile
	switch {
	case n > 0 && (!mine || e.Claim.Mounts != n || held == nil || held.Rev != e.Claim.Rev):
		c, err := m.reg.ClaimMount(ctx, name, m.cfg.Node, m.currentLease(), n)
		if err != nil {
			m.log.Error("volume is mounted here but cannot be claimed in the cluster", "volume", name, "mounts", n, "err", err)
			return
		}
		m.setClaim(name, c)
	case n == 0 && mine:
		if err := m.reg.Release(ctx, e.Claim); err != nil {
			m.log.Warn("reconcile: cannot release claim", "volume", name, "err", err)
			return
		}
		m.setClaim(name, nil)
	case n == 0 && m.markUnchecked(name):
		// This node's mount mark may have outlived a lease it lost with containers
		// mounting the volume: with none left, it goes.
		if err := m.reg.ClearMark(ctx, name, m.cfg.Node); err != nil {
			m.log.Warn("reconcile: cannot clear this node's mount mark", "volume", name, "err", err)
			m.recheckMark(name)
		}
	}
}

// register records a volume found on this disk with no cluster record (a new or wiped
// store, a forged deletion) as held here, at the epoch of this copy: its data is never
// deleted for want of a record. It returns the record made, if it made it.
func (m *Manager) register(ctx context.Context, rec localstore.Record) (cluster.Entry, bool) {
	size, err := m.disk.Size(rec.Name)
	if err != nil {
		m.log.Warn("cannot measure a volume found on disk with no cluster record; registering it with size 0", "volume", rec.Name, "err", err)
	}
	e, created, err := m.reg.Create(ctx, cluster.Volume{Name: rec.Name, Owner: m.cfg.Node, Epoch: rec.Epoch, Root: rec.Root,
		Size: size, Options: rec.Options, Created: rec.Created})
	switch {
	case err != nil:
		m.log.Warn("cannot register a volume found on disk with no cluster record; will retry", "volume", rec.Name, "err", err)
	case created:
		m.log.Warn("volume on disk had no cluster record; registered it as held here", "volume", rec.Name, "epoch", e.Volume.Epoch)
	}
	return e, created
}

// dropIfConfirmed drops this node's copy of a volume that moved on to v's owner at v's
// epoch, once that node confirms it holds the volume there: the copy is deleted, or kept
// as a replica. A denial is reported; an owner that does not answer is asked again
// later. The caller holds the volume's lock.
func (m *Manager) dropIfConfirmed(ctx context.Context, rec localstore.Record, v cluster.Volume) {
	name := rec.Name
	if rec.MountCount() > 0 {
		m.report(name, metrics.RecordContradicts, fmt.Sprintf("containers on node %q mount volume %q (its copy of epoch %d), but the record says node %q holds it at epoch %d; not obeyed: the copy stays in use here",
			m.cfg.Node, name, rec.Epoch, v.Owner, v.Epoch))
		return
	}
	p := m.currentPuller()
	if p == nil {
		return // alone, this node can't ask: its copy stays
	}
	h, err := p.Holds(ctx, v.Owner, name)
	if err != nil {
		m.log.Debug("cannot confirm yet that the volume's owner holds it; keeping this copy", "volume", name, "owner", v.Owner, "err", err)
		return
	}
	if !h.Held || h.Epoch < v.Epoch || v.Root != "" && h.Root != "" && h.Root != v.Root {
		m.report(name, metrics.RecordUnconfirmed, fmt.Sprintf("the record of volume %q says node %q holds it at epoch %d, but node %q does not confirm it (%s); not obeyed: node %q keeps its copy (epoch %d). Check what can write to the cluster store",
			name, v.Owner, v.Epoch, v.Owner, describeHolding(h), m.cfg.Node, rec.Epoch))
		return
	}
	if m.cfg.KeepReplica || m.replicated(v.Options) {
		m.keepAsReplica(ctx, rec, v)
		return
	}
	m.deleteCopy(name, "deleted this node's copy of a volume that moved away, confirmed held by its owner", "owner", v.Owner, "epoch", v.Epoch)
}

// deleteCopy deletes this node's copy of a volume and logs msg.
func (m *Manager) deleteCopy(name, msg string, args ...any) {
	if err := m.disk.Delete(name); err != nil && !errors.Is(err, localstore.ErrNotExist) {
		m.log.Warn("cannot delete this node's copy of a volume", "volume", name, "err", err)
		return
	}
	m.log.Info(msg, append([]any{"volume", name}, args...)...)
}

// reportEvery is how often the same finding about a volume is logged again.
const reportEvery = 10 * time.Minute

// report logs, as an error, a cluster record this node does not obey (why says which
// and what to do), and counts it by reason (no count for an empty reason). The same
// finding is logged again only every reportEvery.
func (m *Manager) report(name, reason, why string, args ...any) {
	key := name + "\x00" + why
	m.mu.Lock()
	last, seen := m.reported[key]
	if seen && time.Since(last) < reportEvery {
		m.mu.Unlock()
		return
	}
	for k, at := range m.reported { // findings seen long ago are forgotten
		if time.Since(at) >= reportEvery {
			delete(m.reported, k)
		}
	}
	m.reported[key] = time.Now()
	m.mu.Unlock()
	if reason != "" {
		m.cfg.Metrics.RecordRefused(reason)
	}
	m.log.Error(why, append([]any{"volume", name}, args...)...)
}

// WatchRemovals settles a volume held here as soon as its record changes (another node
// marked it for removal, or the record was rewritten or deleted), until ctx ends.
func (m *Manager) WatchRemovals(ctx context.Context) {
	if err := m.waitReady(ctx); err != nil {
		return
	}
	for ch := range m.reg.WatchVolumes(ctx) {
		if _, err := m.disk.Load(ch.Name); err == nil {
			m.reconcileOne(ctx, ch.Name)
		}
	}
}

// keepAsReplica keeps this node's copy of a volume that moved on to v's owner, confirmed,
// as a replica of it: for a replicated volume, the old owner's copy is one of its
// replicas (the new owner's syncs keep it current, or drop it if the count is kept
// elsewhere). The caller holds the volume's lock.
func (m *Manager) keepAsReplica(ctx context.Context, rec localstore.Record, v cluster.Volume) {
	name := rec.Name
	rec.MovedTo, rec.MovedAt = v.Owner, v.Epoch
	if err := m.disk.Save(rec); err != nil {
		m.log.Warn("cannot keep this node's copy as a replica", "volume", name, "err", err)
		return
	}
	m.log.Info("keeping this node's copy of a volume that moved away, as a replica", "volume", name, "owner", v.Owner, "epoch", v.Epoch)
	if !m.replicated(v.Options) {
		return
	}
	// The copy holds what was written before the move, and nothing since: recorded with
	// no sync time, it shows as behind by as long as it can be until the owner syncs it.
	rp := cluster.Replica{Volume: name, Node: m.cfg.Node, Epoch: v.Epoch, Root: rec.Root, Bytes: v.Size}
	if err := m.reg.PutReplica(ctx, rp); err != nil {
		m.log.Warn("cannot record this node's copy as a replica; the owner's next sync does", "volume", name, "err", err)
	}
}
