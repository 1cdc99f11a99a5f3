package volume

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/daemon/localstore"
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
// The copy runs on ctx: if ctx ends, it stops, and a retry resumes from what arrived.
func (m *Manager) Copy(ctx context.Context, name, newName string) (CopyResult, error) {
	res := CopyResult{Volume: name, Copy: newName, To: m.cfg.Node}
	if err := ValidateName(newName); err != nil {
		return res, fmt.Errorf("node %q: %w", m.cfg.Node, err)
	}
	if newName == name {
		return res, tell(ErrExists, "volume %q: a copy needs another name", name)
	}
	start := time.Now()
	store, e, p, claim, err := m.claimCopy(ctx, name, newName)
	if err != nil {
		return res, err
	}
	res.From = e.Volume.Owner
	t := newTracker(Progress{Kind: KindCopy, Copy: newName, From: res.From, To: m.cfg.Node, Started: time.Now().UTC()}, m.publisher(claim))
	m.log.Info("copying volume", "volume", name, "copy", newName, "from", res.From)
	got, err := m.receive(ctx, p, e.Volume, claim, store.StagingDir(newName), 0, t)
	if err == nil {
		err = m.commitCopy(ctx, store, e, claim, newName, got)
	}
	if err != nil {
		m.release(ctx, claim)
		return res, err
	}
	res.Bytes, res.Took = got.Size, time.Since(start)
	m.log.Info("copied volume", "volume", name, "copy", newName, "from", res.From, "bytes", got.Size, "took", res.Took.Round(time.Millisecond))
	return res, nil
}

// claimCopy checks that volume name can be copied here as newName and claims it for the
// copy, under the source's lock.
func (m *Manager) claimCopy(ctx context.Context, name, newName string) (*localstore.Store, cluster.Entry, Puller, *cluster.Claim, error) {
	store, unlock, err := m.begin(ctx, name)
	if err != nil {
		return nil, cluster.Entry{}, nil, nil, err
	}
	defer unlock()
	e, err := m.entry(ctx, name, "copy")
	if err != nil {
		return nil, e, nil, nil, err
	}
	if err := m.nameFree(ctx, store, newName); err != nil {
		return nil, e, nil, nil, err
	}
	const mountedHint = "stop it there, then copy it"
	p, err := m.checkSource(e, mountedHint)
	if err != nil {
		return nil, e, nil, nil, err
	}
	claim, _, err := m.reg.BeginCopy(ctx, name, m.cfg.Node, m.currentLease())
	if err != nil {
		return nil, e, nil, nil, m.refused(ctx, name, "copy", mountedHint, err)
	}
	return store, e, p, claim, nil
}

// nameFree checks that no volume is called name, in the cluster or on this node's disk.
func (m *Manager) nameFree(ctx context.Context, store *localstore.Store, name string) error {
	switch e, err := m.reg.Get(ctx, name); {
	case err == nil:
		return tell(ErrExists, "volume %q exists already, on node %q; choose another name, or remove it first with 'drayage volume rm %s'",
			name, e.Volume.Owner, name)
	case !errors.Is(err, cluster.ErrVolumeNotFound):
		return m.storeErr("read volume "+name, err)
	}
	if _, err := store.Load(name); !errors.Is(err, localstore.ErrNotExist) {
		return tell(ErrExists, "node %q holds data for a volume called %q that the cluster has no record of (see %s); choose another name",
			m.cfg.Node, name, store.DataDir(name))
	}
	return nil
}

// commitCopy installs the copy as volume newName and records it in the cluster, which
// ends the copy claim. A name taken meanwhile, or a claim lost, leaves nothing behind.
func (m *Manager) commitCopy(ctx context.Context, store *localstore.Store, src cluster.Entry, claim *cluster.Claim, newName string, got Pulled) error {
	unlock := m.locks.Lock(newName)
	defer unlock()
	if err := m.nameFree(ctx, store, newName); err != nil {
		return err
	}
	rec := localstore.Record{Name: newName, Options: src.Volume.Options, Created: time.Now().UTC(), Epoch: 1, Pending: true, Root: got.Root}
	if err := store.Install(rec, store.StagingDir(newName)); err != nil {
		return fmt.Errorf("volume %q on node %q: %w", newName, m.cfg.Node, err)
	}
	_, err := m.reg.FinishCopy(ctx, claim, cluster.Volume{Name: newName, Owner: m.cfg.Node, Epoch: 1, Size: got.Size, Root: got.Root,
		Options: rec.Options, Created: rec.Created})
	if err == nil {
		m.committed(store, rec)
		return nil
	}
	if !errors.Is(err, cluster.ErrVolumeExists) && !errors.Is(err, cluster.ErrClaimLost) {
		// The copy may have been recorded: it stays, pending, for Reconcile to settle.
		return m.storeErr("record the copy "+newName, err)
	}
	if derr := store.Delete(newName); derr != nil {
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
