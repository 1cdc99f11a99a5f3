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

// migrateHere moves a volume held by another node to this one for a Mount: it checks the
// owner is up and the volume idle and small enough, claims the volume for this node (the
// fencing epoch goes up by one), pulls it, installs it, and commits the new ownership.
// Any failure leaves the volume with its owner, untouched. The caller holds the lock.
func (m *Manager) migrateHere(ctx context.Context, store *localstore.Store, e cluster.Entry) (cluster.Entry, error) {
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
		return e, tell(ErrInUse, "volume %q is mounted on node %q by %s; stop it there first, then start this container again",
			name, c.Node, containers(c.Mounts))
	}
	if alive, seen := p.Peer(owner); !alive {
		last := "never seen by this node"
		if !seen.IsZero() {
			last = "last seen " + units.HumanDuration(time.Since(seen)) + " ago"
		}
		return e, tell(ErrOwnerDown, "volume %q is held by node %q, which is down (%s); start drayage there again, then retry",
			name, owner, last)
	}
	if limit := m.cfg.DynamicLimit; limit > 0 && e.Volume.Size > limit {
		return e, tell(ErrTooLarge, "volume %q on node %q holds %s, above the %s that a container start moves to node %q; run the container on node %q, or raise DRAYAGE_DYNAMIC_LIMIT on node %q",
			name, owner, units.BytesSize(float64(e.Volume.Size)), units.BytesSize(float64(limit)), m.cfg.Node, owner, m.cfg.Node)
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
	size, err := p.Pull(ctx, name, owner, claim.Epoch, staging)
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
