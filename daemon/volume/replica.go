package volume

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/daemon/localstore"
)

// The replica's side of a replicated volume (replicate.go is the owner's). A replica is
// a copy of a volume held by another node, kept current by syncs the owner asks for:
// its record on disk names the owner and the epoch of its last sync (MovedTo, MovedAt),
// and the cluster store has a replica record written after each sync.
//
// A sync is a pull into the replica's staging tree, which holds the tree the last sync
// replaced: it is brought up to date from the replica first (localstore.PrimeStaging),
// so the pull sends only what changed since the replica's last sync. The synced tree is
// swapped in whole (localstore.InstallReplica): a replica is always one complete tree,
// as of one sync, and a sync cut off at any point leaves the last one in place. A Mount
// here of the volume cancels a sync running and pulls into the same staging tree.

// replicaSync is a sync running into a replica here.
type replicaSync struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// SyncReplica brings this node's replica of volume name up to date from owner, which
// holds it at epoch (it asked, replicate.go), as how says.
func (m *Manager) SyncReplica(ctx context.Context, name, owner string, epoch uint64, how SyncHow) (ReplicaSynced, error) {
	p := m.currentPuller()
	if p == nil {
		return ReplicaSynced{}, fmt.Errorf("volume %q: node %q runs alone (no certificate in its TLS dir) and can't hold replicas", name, m.cfg.Node)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	e, sync, err := m.beginSync(ctx, name, owner, epoch, cancel)
	if err != nil {
		return ReplicaSynced{}, err
	}
	defer m.endSync(name, sync)
	started := time.Now().UTC()
	got, err := func() (Pulled, error) {
		defer m.useStaging(name)()
		if _, err := m.disk.Load(name); err == nil {
			files, bytes, err := m.disk.PrimeStaging(ctx, name, !how.Verify)
			if err != nil {
				return Pulled{}, fmt.Errorf("node %q: %w", m.cfg.Node, err)
			}
			if files > 0 {
				m.log.Debug("brought the replica's staging up to date from its last sync", "volume", name, "files", files, "bytes", bytes)
			}
		}
		return p.Pull(ctx, PullRequest{Volume: name, From: owner, Epoch: epoch, Staging: m.disk.StagingDir(name),
			AllowPrivileged: AllowsPrivileged(e.Volume.Options), Live: true, Walk: how.Walk, Verify: how.Verify})
	}()
	if err != nil {
		return ReplicaSynced{}, fmt.Errorf("volume %q: syncing the replica on node %q from node %q failed: %w; the replica keeps its last sync, and the next one resumes from what arrived",
			name, m.cfg.Node, owner, err)
	}
	return m.installReplica(ctx, e, owner, epoch, how.Clean, started, got)
}

// beginSync checks that a sync of volume name from owner at epoch may run here now and
// notes it running. A Mount here of the volume cancels it (stopSync).
func (m *Manager) beginSync(ctx context.Context, name, owner string, epoch uint64, cancel context.CancelFunc) (cluster.Entry, *replicaSync, error) {
	unlock, err := m.begin(ctx, name)
	if err != nil {
		return cluster.Entry{}, nil, err
	}
	defer unlock()
	if err := m.stopping(); err != nil {
		return cluster.Entry{}, nil, err
	}
	e, err := m.entry(ctx, name, "sync")
	if err != nil {
		return e, nil, err
	}
	if e.Volume.Owner != owner || e.Volume.Epoch != epoch || owner == m.cfg.Node {
		return e, nil, fmt.Errorf("volume %q: node %q asks for a replica sync at epoch %d, but the record says node %q holds it at epoch %d: %w",
			name, owner, epoch, e.Volume.Owner, e.Volume.Epoch, cluster.ErrStaleEpoch)
	}
	rec, err := m.disk.Load(name)
	switch {
	case errors.Is(err, localstore.ErrNotExist):
	case err != nil:
		return e, nil, fmt.Errorf("node %q: %w", m.cfg.Node, err)
	case !rec.Replica():
		return e, nil, tell(ErrConflict, "node %q holds its own copy of volume %q (epoch %d), not a replica; it keeps it until node %q confirms it holds the volume, then becomes a replica",
			m.cfg.Node, name, rec.Epoch, owner)
	}
	s := &replicaSync{cancel: cancel, done: make(chan struct{})}
	var busy bool
	m.with(name, func(v *local) {
		if busy = v.job != nil && v.job.running() || v.sync != nil; !busy {
			v.sync = s
		}
	})
	if busy {
		return e, nil, fmt.Errorf("volume %q: node %q is pulling or syncing it already; the next sync retries", name, m.cfg.Node)
	}
	return e, s, nil
}

// endSync notes a sync ended.
func (m *Manager) endSync(name string, s *replicaSync) {
	m.with(name, func(v *local) {
		if v.sync == s {
			v.sync = nil
		}
	})
	s.cancel()
	close(s.done)
}

// stopSync cancels the sync running into volume name's replica here, if one runs, and
// returns a channel closed once it has ended. The caller holds the volume's lock.
func (m *Manager) stopSync(name string) <-chan struct{} {
	var s *replicaSync
	m.with(name, func(v *local) { s = v.sync })
	if s == nil {
		return nil
	}
	s.cancel()
	return s.done
}

// installReplica puts a synced tree in place as the replica, then records the sync in
// the cluster store. The record is fenced: a sync from a node that is no longer the
// owner at epoch is not recorded (the tree, a complete copy as of that epoch, stays).
func (m *Manager) installReplica(ctx context.Context, e cluster.Entry, owner string, epoch uint64, clean bool, started time.Time, got Pulled) (ReplicaSynced, error) {
	name := e.Volume.Name
	unlock, err := m.begin(ctx, name)
	if err != nil {
		return ReplicaSynced{}, err
	}
	defer unlock()
	if err := ctx.Err(); err != nil {
		return ReplicaSynced{}, fmt.Errorf("volume %q: the replica sync on node %q was stopped: %w", name, m.cfg.Node, err)
	}
	old, err := m.disk.Load(name)
	if err == nil && !old.Replica() {
		return ReplicaSynced{}, tell(ErrConflict, "node %q holds its own copy of volume %q now; the sync is not installed", m.cfg.Node, name)
	}
	same := err == nil && old.Root != "" && old.Root == got.Root
	// Fenced before the swap: a sync from a node that lost the volume meanwhile, or of a
	// volume being removed, is not installed (staging keeps it for the next sync).
	if now, err := m.entry(ctx, name, "sync"); err != nil {
		return ReplicaSynced{}, err
	} else if now.Volume.Owner != owner || now.Volume.Epoch != epoch {
		return ReplicaSynced{}, fmt.Errorf("volume %q: node %q synced it at epoch %d, but node %q holds it at epoch %d now; the sync is not installed on node %q: %w",
			name, owner, epoch, now.Volume.Owner, now.Volume.Epoch, m.cfg.Node, cluster.ErrStaleEpoch)
	}
	now := time.Now().UTC()
	rec := localstore.Record{Name: name, Options: e.Volume.Options, Created: e.Volume.Created, Epoch: epoch, Root: got.Root,
		MovedTo: owner, MovedAt: epoch, Synced: now}
	if same {
		// The synced tree is the replica's, file for file (the root hash covers every
		// file and its metadata): the replica stays as it is, and only its record says
		// when it was last found current.
		if err := m.disk.Save(rec); err != nil {
			return ReplicaSynced{}, fmt.Errorf("node %q: %w", m.cfg.Node, err)
		}
	} else {
		if err := m.disk.InstallReplica(rec, m.disk.StagingDir(name)); err != nil {
			return ReplicaSynced{}, fmt.Errorf("node %q: %w", m.cfg.Node, err)
		}
		m.forget()
	}
	rp := cluster.Replica{Volume: name, Node: m.cfg.Node, Epoch: epoch, Started: started, Synced: now, Clean: clean,
		Root: got.Root, Bytes: got.Size, Sent: got.Sent}
	if err := m.reg.PutReplica(ctx, rp); err != nil {
		return ReplicaSynced{}, fmt.Errorf("volume %q: node %q synced its replica but cannot record it: %w", name, m.cfg.Node, err)
	}
	return ReplicaSynced{Root: got.Root, Bytes: got.Size, Sent: got.Sent}, nil
}

// DropReplica deletes this node's replica of volume name at the owner's word: owner,
// the node asking, holds it at epoch (the record must say so too) with enough replicas
// elsewhere, or removes the volume. A copy that is not a replica is never dropped this way.
func (m *Manager) DropReplica(ctx context.Context, name, owner string, epoch uint64) error {
	unlock, err := m.begin(ctx, name)
	if err != nil {
		return err
	}
	defer unlock()
	e, err := m.entry(ctx, name, "drop")
	if removing := errors.Is(err, ErrNotFound) && e.Volume.Removing; err != nil && !removing { // a removal drops its replicas
		return err
	}
	if e.Volume.Owner != owner || e.Volume.Epoch != epoch || owner == m.cfg.Node {
		return fmt.Errorf("volume %q: node %q asks node %q to drop its replica at epoch %d, but the record says node %q holds it at epoch %d: %w",
			name, owner, m.cfg.Node, epoch, e.Volume.Owner, e.Volume.Epoch, cluster.ErrStaleEpoch)
	}
	rec, err := m.disk.Load(name)
	if errors.Is(err, localstore.ErrNotExist) {
		return m.reg.DeleteReplica(ctx, name, m.cfg.Node)
	}
	if err != nil {
		return fmt.Errorf("node %q: %w", m.cfg.Node, err)
	}
	if !rec.Replica() || rec.MountCount() > 0 {
		return tell(ErrConflict, "node %q holds its own copy of volume %q (epoch %d), not a replica; it is not dropped", m.cfg.Node, name, rec.Epoch)
	}
	var busy bool
	m.with(name, func(v *local) { busy = v.sync != nil || v.job != nil && v.job.running() || v.stagingUsers > 0 })
	if busy {
		m.stopSync(name)
		return fmt.Errorf("volume %q: node %q is syncing or pulling it now; retry in a moment", name, m.cfg.Node)
	}
	if err := m.disk.Delete(name); err != nil && !errors.Is(err, localstore.ErrNotExist) {
		return fmt.Errorf("volume %q: node %q cannot delete its replica: %w; check its state dir", name, m.cfg.Node, err)
	}
	m.disk.DropStaging(name)
	m.log.Info("dropped this node's replica at its owner's word", "volume", name, "owner", owner, "epoch", epoch)
	if err := m.reg.DeleteReplica(ctx, name, m.cfg.Node); err != nil {
		return m.storeErr("drop the replica record of volume "+name, err)
	}
	return nil
}
