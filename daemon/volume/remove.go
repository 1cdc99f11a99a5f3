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
	unlock, err := m.begin(ctx, name)
	if err != nil {
		return res, err
	}
	defer unlock()
	if rec, err := m.disk.Load(name); err == nil && rec.MountCount() > 0 {
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
	if err := m.giveUpFill(ctx, e); err != nil {
		return res, err
	}
	if err := m.disk.NoteRemoval(name, e.Volume.Epoch); err != nil {
		return res, fmt.Errorf("node %q: %w; check the state dir, then retry", m.cfg.Node, err)
	}
	v, err := m.reg.MarkRemoving(ctx, name, cluster.RemoveOptions{By: m.cfg.Node, Force: o.Force})
	if err == nil && v.Epoch != e.Volume.Epoch {
		if err := m.disk.NoteRemoval(name, v.Epoch); err != nil { // it moved meanwhile
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
		m.finishRemoval(ctx, v)
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

// removalConfirmed reports whether the node that record v names as the removal's
// requester confirms it asked for it, at v's epoch: a removal mark alone is no proof. A
// requester that does not answer is asked again later; a denial is reported.
func (m *Manager) removalConfirmed(ctx context.Context, v cluster.Volume) bool {
	p := m.currentPuller()
	switch {
	case v.RemovedBy == m.cfg.Node:
		if m.disk.RemovalNoted(v.Name, v.Epoch) {
			return true
		}
	case p == nil:
		// A node without a cluster identity can't ask any other: the store's word is all
		// it has (give such a store TLS and credentials of its own).
		return true
	case v.RemovedBy != "":
		asked, err := p.RemovalAsked(ctx, v.RemovedBy, v.Name, v.Epoch)
		if err != nil {
			m.log.Debug("cannot confirm yet who asked for a removal; keeping the volume", "volume", v.Name, "requester", v.RemovedBy, "err", err)
			return false
		}
		if asked {
			return true
		}
	}
	who := "but the record names no node that asked for it"
	if v.RemovedBy != "" {
		who = fmt.Sprintf("but node %q, which the record says asked for it, does not confirm it", v.RemovedBy)
	}
	m.report(v.Name, metrics.RecordUnconfirmed, fmt.Sprintf("volume %q is marked for removal at epoch %d, %s; not obeyed: node %q keeps the volume. If you mean to remove it, run 'drayage volume rm %s' again; else check what can write to the cluster store",
		v.Name, v.Epoch, who, m.cfg.Node, v.Name))
	return false
}

// finishRemoval deletes the data of a volume marked for removal, then its record. The
// caller holds the volume's lock.
func (m *Manager) finishRemoval(ctx context.Context, v cluster.Volume) {
	if err := m.disk.Delete(v.Name); err != nil && !errors.Is(err, localstore.ErrNotExist) {
		m.log.Error("cannot delete data of removed volume", "volume", v.Name, "err", err)
		return
	}
	m.disk.DropDownload(v.Name) // what a fill from its source had downloaded
	m.dropReplicasOf(ctx, v)
	if err := m.reg.FinishRemoval(ctx, v); err != nil {
		m.log.Error("deleted the data of a removed volume but not its record; will retry", "volume", v.Name, "err", err)
		return
	}
	m.log.Info("removed volume", "volume", v.Name)
}

// dropReplicasOf asks the nodes holding replicas of a volume being removed to drop them,
// before its record goes: a node asked later would find no record, and keep its replica
// as an orphan (reported, never deleted on no record's word). A node that can't be asked
// now drops its replica if it sees the removal mark in time.
func (m *Manager) dropReplicasOf(ctx context.Context, v cluster.Volume) {
	p := m.currentPuller()
	if p == nil {
		return
	}
	reps, err := m.reg.Replicas(ctx, v.Name)
	if err != nil {
		return
	}
	for _, rp := range reps {
		var err error
		for try := range 3 { // a sync running there is stopped first: ask again
			if err = p.DropReplica(ctx, rp.Node, v.Name, v.Epoch); err == nil || try == 2 {
				break
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
		if err != nil {
			m.log.Warn("cannot have a replica of a removed volume dropped; the node keeps it as an orphan and reports it", "volume", v.Name, "replica", rp.Node, "err", err)
		}
	}
}
