package volume

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/docker/go-units"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/daemon/localstore"
)

// pullOptions say how a volume is moved here.
type pullOptions struct {
	// limit is the largest volume to move (0: any size).
	limit int64
	// progress, if set, hears the bytes received so far and the bytes to receive.
	progress func(done, total int64)
}

// pullHere moves a volume held by another node to this one: it checks the owner is up
// and the volume idle and within the limit, claims the volume for this node (the fencing
// epoch goes up by one), pulls it, installs it, and commits the new ownership with an
// unmounted claim the caller takes over. Any failure leaves the volume with its owner,
// untouched. The caller holds the lock.
func (m *Manager) pullHere(ctx context.Context, store *localstore.Store, e cluster.Entry, o pullOptions) (cluster.Entry, error) {
	name, owner := e.Volume.Name, e.Volume.Owner
	p := m.currentPuller()
	if p == nil {
		return e, tell(ErrElsewhere, "volume %q is held by node %q, not %q; this node runs alone (no certificate in its TLS dir), so it can't pull volumes: run the container on node %q, or join this node to the cluster",
			name, owner, m.cfg.Node, owner)
	}
	if c := e.Claim; c != nil {
		if c.Kind == cluster.ClaimMigrate {
			return e, tell(ErrInUse, "volume %q is moving to node %q right now; retry when it is done", name, c.Node)
		}
		return e, tell(ErrInUse, "volume %q is mounted on node %q by %s; stop it there or use 'drayage volume move %s --to %s'",
			name, c.Node, containers(c.Mounts), name, m.cfg.Node)
	}
	if alive, seen := p.Peer(owner); !alive {
		last := "never seen by this node"
		if !seen.IsZero() {
			last = "last seen " + units.HumanDuration(time.Since(seen)) + " ago"
		}
		return e, tell(ErrOwnerDown, "volume %q is held by node %q, which is down (%s); start drayage there again, then retry",
			name, owner, last)
	}
	if limit := o.limit; limit > 0 && e.Volume.Size > limit {
		return e, tell(ErrTooLarge, "volume %q on node %q holds %s, above the %s that a container start moves (DRAYAGE_DYNAMIC_LIMIT); move it first with 'drayage volume move %s --to %s'",
			name, owner, units.BytesSize(float64(e.Volume.Size)), units.BytesSize(float64(limit)), name, m.cfg.Node)
	}
	lease := m.currentLease()
	claim, _, err := m.reg.BeginMigration(ctx, name, m.cfg.Node, lease)
	if err != nil {
		if errors.Is(err, cluster.ErrInUse) || errors.Is(err, cluster.ErrMigrating) {
			return e, fmt.Errorf("%w: %w; retry when it is free", ErrInUse, err)
		}
		return e, m.storeErr("claim volume "+name, err)
	}
	abort := func() {
		if rerr := m.reg.Release(context.WithoutCancel(ctx), claim); rerr != nil {
			m.log.Warn("cannot release the migration claim; it lapses with the lease", "volume", name, "err", rerr)
		}
	}
	start := time.Now()
	m.log.Info("pulling volume", "volume", name, "from", owner, "epoch", claim.Epoch)
	staging := store.StagingDir(name)
	size, err := p.Pull(ctx, name, owner, claim.Epoch, staging, o.progress)
	if err != nil {
		abort()
		return e, fmt.Errorf("volume %q: pulling it from node %q failed: %w; it stays on node %q, and a retry resumes from what arrived", name, owner, err, owner)
	}
	rec := localstore.Record{Name: name, Options: e.Volume.Options, Created: e.Volume.Created}
	if err := store.Install(rec, staging); err != nil {
		abort()
		return e, fmt.Errorf("volume %q on node %q: %w", name, m.cfg.Node, err)
	}
	// Committed with no mounts yet: Mount claims it next, with the count.
	v, mc, err := m.reg.CommitMigration(ctx, claim, size, lease, 0)
	if err != nil {
		abort()
		return e, fmt.Errorf("volume %q: the move from node %q could not be committed: %w; it stays on node %q, retry", name, owner, err, owner)
	}
	m.setClaim(name, mc)
	m.log.Info("volume moved here", "volume", name, "from", owner, "epoch", v.Epoch, "bytes", size, "took", time.Since(start).Round(time.Millisecond))
	return cluster.Entry{Volume: v, Claim: mc}, nil
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
// volume already here is left as it is.
func (m *Manager) Move(ctx context.Context, name string, progress func(done, total int64)) (MoveResult, error) {
	store, unlock, err := m.begin(ctx, name)
	if err != nil {
		return MoveResult{}, err
	}
	defer unlock()
	e, err := m.entry(ctx, name, "move")
	if err != nil {
		return MoveResult{}, err
	}
	res := MoveResult{Volume: name, From: e.Volume.Owner, To: m.cfg.Node}
	if e.Volume.Owner == m.cfg.Node {
		return res, nil
	}
	start := time.Now()
	e, err = m.pullHere(ctx, store, e, pullOptions{progress: progress})
	if err != nil {
		return res, err
	}
	if c := m.claim(name); c != nil {
		if err := m.reg.Release(ctx, c); err != nil {
			m.log.Warn("cannot release the claim after a move; it lapses with the lease", "volume", name, "err", err)
		}
		m.setClaim(name, nil)
	}
	res.Bytes, res.Took = e.Volume.Size, time.Since(start)
	return res, nil
}
