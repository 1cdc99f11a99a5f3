package volume

import (
	"context"
	"errors"
	"fmt"

	"github.com/drayage/drayage/daemon/localstore"
)

// SendDir authorizes sending a volume to node for a migration or a copy at epoch and
// returns the directory to send from. Only the owner sends, only to the node and epoch
// named in the volume's migration or copy claim, and never while containers here mount
// the volume; or, for a replica sync this node asked node for, at its own epoch
// (replicate.go), mounted or not.
func (m *Manager) SendDir(ctx context.Context, name, node string, epoch uint64) (string, error) {
	unlock, err := m.begin(ctx, name)
	if err != nil {
		return "", err
	}
	defer unlock()
	if m.ticketed(name, node, epoch) {
		return m.replicaSendDir(ctx, name, node, epoch)
	}
	if err := m.reg.CheckTransfer(ctx, name, node, epoch); err != nil {
		return "", fmt.Errorf("node %q: %w", m.cfg.Node, err)
	}
	rec, err := m.heldHere(ctx, name, "send")
	if err != nil {
		return "", err
	}
	if n := rec.MountCount(); n > 0 {
		return "", fmt.Errorf("volume %q is mounted by %s on node %q: %w; stop them there first", name, containers(n), m.cfg.Node, ErrInUse)
	}
	return m.disk.DataDir(name), nil
}

// heldHere returns the record of a volume this node holds, for what (a send, a backup)
// to read its tree: only the owner's copy the cluster's record names, at its epoch (never
// an older one the record was rolled back to, nor one of a move not yet committed), and
// not while it is still being filled. The caller holds the volume's lock.
func (m *Manager) heldHere(ctx context.Context, name, what string) (localstore.Record, error) {
	e, err := m.entry(ctx, name, what)
	if err != nil {
		return localstore.Record{}, err
	}
	if e.Volume.Owner != m.cfg.Node {
		return localstore.Record{}, fmt.Errorf("volume %q is held by node %q, not %q: %w", name, e.Volume.Owner, m.cfg.Node, ErrElsewhere)
	}
	rec, err := m.disk.Load(name)
	if err != nil {
		return localstore.Record{}, fmt.Errorf("volume %q on node %q: %w", name, m.cfg.Node, err)
	}
	if rec, err = m.current(rec, e); err != nil {
		return localstore.Record{}, err
	}
	return rec, m.filled(rec)
}

// Holding is what a node says it holds of a volume, when another node asks before it
// drops its own copy (Puller.Holds).
type Holding struct {
	// Held says the node holds the volume committed (not a copy still pending, not an
	// old copy kept as a replica), at Epoch, with root hash Root (if it was pulled).
	Held  bool   `json:"held"`
	Epoch uint64 `json:"epoch,omitempty"`
	Root  string `json:"root,omitempty"`
}

// Holding says what this node holds of volume name, for another node that asks.
func (m *Manager) Holding(ctx context.Context, name string) (Holding, error) {
	unlock, err := m.begin(ctx, name)
	if err != nil {
		return Holding{}, err
	}
	defer unlock()
	rec, err := m.disk.Load(name)
	if errors.Is(err, localstore.ErrNotExist) {
		return Holding{}, nil
	}
	if err != nil {
		return Holding{}, fmt.Errorf("node %q: %w", m.cfg.Node, err)
	}
	if rec.Pending || rec.Replica() {
		return Holding{}, nil
	}
	return Holding{Held: true, Epoch: rec.Epoch, Root: rec.Root}, nil
}

func describeHolding(h Holding) string {
	if !h.Held {
		return "it holds no committed copy"
	}
	return fmt.Sprintf("it holds epoch %d, root hash %.12s", h.Epoch, h.Root)
}

// RemovalAsked says whether the removal of volume name at epoch was asked on this node,
// for the node that holds it.
func (m *Manager) RemovalAsked(ctx context.Context, name string, epoch uint64) (bool, error) {
	if err := m.waitReady(ctx); err != nil {
		return false, err
	}
	return m.disk.RemovalNoted(name, epoch), nil
}
