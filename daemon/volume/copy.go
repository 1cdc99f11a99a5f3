package volume

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/daemon/localstore"
	"github.com/drayage/drayage/progress"
)

// CopyResult describes a finished copy.
type CopyResult struct {
	Volume string `json:"volume"`
	// Copy is the new volume, held by To.
	Copy  string        `json:"copy"`
	From  string        `json:"from"`
	To    string        `json:"to"`
	Bytes int64         `json:"bytes"`
	Took  time.Duration `json:"took"`
}

// Copy makes a new volume newName on this node with the content and options of volume
// name, which stays with its owner ('drayage volume copy'). The source must not be
// mounted; a copy claim keeps it from being mounted or moved until the copy is recorded.
// The copy runs as a job (pull.go): a retry of the same copy joins it, Close stops it, a
// retry after a failure resumes from what arrived. If ctx ends first, the copy goes on in
// the background and Copy returns ErrPulling.
func (m *Manager) Copy(ctx context.Context, name, newName string) (CopyResult, error) {
	res := CopyResult{Volume: name, Copy: newName, To: m.cfg.Node}
	if err := ValidateName(newName); err != nil {
		return res, fmt.Errorf("node %q: %w", m.cfg.Node, err)
	}
	if newName == name {
		return res, tell(ErrExists, "volume %q: a copy needs another name", name)
	}
	start := time.Now()
	j, err := m.joinCopy(ctx, name, newName)
	if err != nil {
		return res, err
	}
	res.From = j.from()
	if err := m.await(ctx, j, fmt.Sprintf(moveHint, name)); err != nil {
		return res, err
	}
	res.Bytes, res.Took = j.size, time.Since(start)
	return res, nil
}

// joinCopy joins the copy of volume name into newName running here, or checks that it
// can start, claims the source for it and starts it, under the locks of both volumes.
func (m *Manager) joinCopy(ctx context.Context, name, newName string) (*pullJob, error) {
	unlock, err := m.begin(ctx, min(name, newName))
	if err != nil {
		return nil, err
	}
	defer unlock()
	defer m.locks.Lock(max(name, newName))()
	switch j, err := m.joinJob(newName); {
	case err != nil:
		return nil, err
	case j != nil && j.src.Name != name:
		m.with(newName, func(*local) { j.waiters-- })
		return nil, tell(ErrExists, "volume %q is being pulled to node %q already, from volume %q; choose another name", newName, m.cfg.Node, j.src.Name)
	case j != nil:
		return j, nil
	}
	if err := m.stopping(); err != nil {
		return nil, err
	}
	e, err := m.entry(ctx, name, "copy")
	if err != nil {
		return nil, err
	}
	if err := m.nameFree(ctx, newName); err != nil {
		return nil, err
	}
	const mountedHint = "stop it there, then copy it"
	p, err := m.checkSource(e, mountedHint)
	if err != nil {
		return nil, err
	}
	claim, _, err := m.reg.BeginCopy(ctx, name, m.cfg.Node, m.currentLease())
	if err != nil {
		return nil, m.refused(ctx, name, "copy", mountedHint, err)
	}
	m.log.Info("copying volume", "volume", name, "copy", newName, "from", e.Volume.Owner)
	track := newTracker(progress.Transfer{Volume: name, Kind: progress.KindCopy, Copy: newName, From: e.Volume.Owner, To: m.cfg.Node, Started: time.Now().UTC()}, m.publisher(claim))
	return m.startJob(ctx, &pullJob{key: newName, src: e.Volume, claim: claim, pull: p, track: track,
		commit: func(ctx context.Context, got Pulled) error { return m.commitCopy(ctx, e, claim, newName, got) }})
}

// nameFree checks that no volume is called name, in the cluster or on this node's disk.
func (m *Manager) nameFree(ctx context.Context, name string) error {
	switch e, err := m.reg.Get(ctx, name); {
	case err == nil:
		return tell(ErrExists, "volume %q exists already, on node %q; choose another name, or remove it first with 'drayage volume rm %s'",
			name, e.Volume.Owner, name)
	case !errors.Is(err, cluster.ErrVolumeNotFound):
		return m.storeErr("read volume "+name, err)
	}
	if _, err := m.disk.Load(name); !errors.Is(err, localstore.ErrNotExist) {
		return tell(ErrExists, "node %q holds data for a volume called %q that the cluster has no record of (see %s); choose another name",
			m.cfg.Node, name, m.disk.DataDir(name))
	}
	return nil
}

// commitCopy installs the copy as volume newName and records it in the cluster, which
// ends the copy claim. A name taken meanwhile, or a claim lost, leaves nothing behind.
// The caller holds newName's lock.
func (m *Manager) commitCopy(ctx context.Context, src cluster.Entry, claim *cluster.Claim, newName string, got Pulled) error {
	if err := m.nameFree(ctx, newName); err != nil {
		return err
	}
	rec := localstore.Record{Name: newName, Options: src.Volume.Options, Created: time.Now().UTC(), Epoch: 1, Pending: true, Root: got.Root}
	if err := m.disk.Install(rec, m.disk.StagingDir(newName)); err != nil {
		return fmt.Errorf("volume %q on node %q: %w", newName, m.cfg.Node, err)
	}
	_, err := m.reg.FinishCopy(ctx, claim, cluster.Volume{Name: newName, Owner: m.cfg.Node, Epoch: 1, Size: got.Size, Root: got.Root,
		Options: rec.Options, Created: rec.Created})
	if err == nil {
		m.committed(rec)
		m.log.Info("copied volume", "volume", src.Volume.Name, "copy", newName, "from", claim.From, "bytes", got.Size)
		return nil
	}
	if !errors.Is(err, cluster.ErrVolumeExists) && !errors.Is(err, cluster.ErrClaimLost) {
		// The copy may have been recorded: it stays, pending, for Reconcile to settle.
		return m.storeErr("record the copy "+newName, err)
	}
	if derr := m.disk.Delete(newName); derr != nil {
		m.log.Error("cannot delete a copy that could not be recorded", "volume", newName, "err", derr)
	}
	switch {
	case errors.Is(err, cluster.ErrVolumeExists):
		return tell(ErrExists, "volume %q was created while volume %q was copied into it (%s); choose another name", newName, src.Volume.Name, err)
	case errors.Is(err, cluster.ErrClaimLost):
		return fmt.Errorf("volume %q: the copy to node %q could not be recorded: %w; node %q lost its lease in the cluster store meanwhile, retry", src.Volume.Name, m.cfg.Node, err, m.cfg.Node)
	}
	return m.storeErr("record the copy "+newName, err)
}
