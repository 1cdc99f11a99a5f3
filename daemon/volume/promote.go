package volume

import (
	"context"
	"time"

	"github.com/drayage/drayage/cluster"
)

// PromoteResult describes a promotion ('drayage volume promote').
type PromoteResult struct {
	Volume string `json:"volume"`
	// From is the owner that was down; To the node whose replica is the volume now, at
	// Epoch.
	From  string `json:"from"`
	To    string `json:"to"`
	Epoch uint64 `json:"epoch"`
}

// Promote makes a replica of volume name the volume, its owner being down: the one on
// node to (any live replica's node, if empty), past the volume's max-lag if acceptLoss
// ('drayage volume promote NAME --to NODE --accept-loss'). It runs on any node; the
// replica's node takes the volume over as soon as it sees the record change.
func (m *Manager) Promote(ctx context.Context, name, to string, acceptLoss bool) (PromoteResult, error) {
	unlock, err := m.begin(ctx, name)
	if err != nil {
		return PromoteResult{}, err
	}
	defer unlock()
	e, err := m.settledEntry(ctx, name, "promote")
	if err != nil {
		return PromoteResult{}, err
	}
	res := PromoteResult{Volume: name, From: e.Volume.Owner}
	if e.Volume.Owner == m.cfg.Node || !m.ownerDown(e) {
		return res, tell(ErrElsewhere, "volume %q is held by node %q, which is up: nothing to promote. To move it, use 'drayage volume move %s --to %s'",
			name, e.Volume.Owner, name, orThisNode(to, m.cfg.Node))
	}
	if e, err = m.failover(ctx, e, to, acceptLoss); err != nil {
		return res, err
	}
	res.To, res.Epoch = e.Volume.Owner, e.Volume.Epoch
	return res, nil
}

// orThisNode is node, or this node if node is empty.
func orThisNode(node, self string) string {
	if node == "" {
		return self
	}
	return node
}

// promoteIfOwnerDown has a Mount of a replicated volume whose owner is down promote a
// replica first (failover.go); it returns the record to go on with. The caller holds
// the volume's lock.
func (m *Manager) promoteIfOwnerDown(ctx context.Context, e cluster.Entry) (cluster.Entry, error) {
	if !m.ownerDown(e) || !m.replicated(e.Volume.Options) {
		return e, nil
	}
	start := time.Now()
	ne, err := m.failover(ctx, e, "", false)
	if err != nil {
		return e, err
	}
	m.log.Info("the volume's owner was down: a replica took its place", "volume", ne.Volume.Name, "owner", ne.Volume.Owner,
		"epoch", ne.Volume.Epoch, "took", time.Since(start).Round(time.Millisecond))
	return ne, nil
}
