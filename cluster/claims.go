package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Claim kinds.
const (
	ClaimMount   = "mount"
	ClaimMigrate = "migrate"
	// ClaimCopy holds a volume while a node copies it into a new volume: the volume is
	// neither mounted nor moved meanwhile, and its owner sends it only to that node.
	ClaimCopy = "copy"
	// ClaimSeed holds a volume while its owner fills it from its source (a volume created
	// with -o from=URL): it is neither mounted elsewhere, moved nor copied until the fill
	// is done (cluster/seed.go).
	ClaimSeed = "seed"
)

// Claim says who holds a volume right now. It lives on its holder's lease.
type Claim struct {
	Volume string `json:"volume"`
	// Node is the holder: the owner for a mount, the target for a migration or a copy.
	Node string `json:"node"`
	Kind string `json:"kind"`
	// Epoch is the record's epoch for a mount or a copy, and the epoch the target will
	// own after committing for a migration.
	Epoch uint64 `json:"epoch"`
	// Mounts counts the containers using the volume on Node (mount claims).
	Mounts int `json:"mounts,omitempty"`
	// From is the owner the data comes from (migration and copy claims).
	From string `json:"from,omitempty"`
	// BaseRev is the record revision a migration started from; it commits only if the
	// record is still exactly that.
	BaseRev int64     `json:"base_rev,omitempty"`
	Since   time.Time `json:"since"`
	// Rev is the store revision the claim was read or written at.
	Rev int64 `json:"-"`
	// Unknown keeps the fields a later release wrote.
	Unknown `json:"-"`
}

// claimed says who holds the volume under claim c: ErrMigrating for a migration,
// ErrInUse for the others.
func claimed(c *Claim) error {
	switch c.Kind {
	case ClaimMigrate:
		return fmt.Errorf("volume %q is moving to node %q: %w", c.Volume, c.Node, ErrMigrating)
	case ClaimCopy:
		return fmt.Errorf("volume %q is being copied to node %q: %w", c.Volume, c.Node, ErrInUse)
	case ClaimSeed:
		return fmt.Errorf("volume %q is being filled from its source on node %q: %w", c.Volume, c.Node, ErrInUse)
	}
	return fmt.Errorf("volume %q is mounted on node %q by %d container(s): %w", c.Volume, c.Node, c.Mounts, ErrInUse)
}

// ClaimMount records that node mounts the volume, mounts times, on lease. Only the owner
// may; the claim is refused while another claim (a migration) holds the volume. Calling
// it again updates the count, or moves the claim to a new lease.
func (r *Registry) ClaimMount(ctx context.Context, name, node string, lease Lease, mounts int) (*Claim, error) {
	return r.claimMount(ctx, name, nil, node, lease, mounts)
}

// ClaimMountOf is ClaimMount of the volume of e, an entry the caller has just read (with
// Get): it is decided from e, and the store read again only if e is no longer current.
// A Mount of a volume held here costs two round trips fewer.
func (r *Registry) ClaimMountOf(ctx context.Context, e Entry, node string, lease Lease, mounts int) (*Claim, error) {
	return r.claimMount(ctx, e.Volume.Name, &e, node, lease, mounts)
}

func (r *Registry) claimMount(ctx context.Context, name string, read *Entry, node string, lease Lease, mounts int) (*Claim, error) {
	var c *Claim
	rev, _, err := r.changeFrom(ctx, name, read, func(e Entry) (txn, error) {
		v := e.Volume
		if v.Removing {
			return txn{}, fmt.Errorf("volume %q: %w", name, ErrRemoving)
		}
		if v.Owner != node {
			return txn{}, fmt.Errorf("volume %q is held by node %q, not %q: %w", name, v.Owner, node, ErrNotOwner)
		}
		c = &Claim{Volume: name, Node: node, Kind: ClaimMount, Epoch: v.Epoch, Mounts: mounts, Since: time.Now().UTC()}
		conds := []Cond{Unchanged(KV{Key: r.volumeKey(name), Rev: v.Rev})}
		var ops []Op
		switch {
		case e.Claim == nil:
			conds = append(conds, Absent(r.claimKey(name)))
			// Mounted again: a replica synced clean is current only until a container
			// writes, and the mark that says one may have goes when it unmounts, before
			// the sync that follows.
			dirty, err := r.uncleanReplicas(ctx, name)
			if err != nil {
				return txn{}, err
			}
			for _, kv := range dirty {
				conds = append(conds, Unchanged(kv))
				ops = append(ops, Put(kv.Key, kv.Value))
			}
		case e.Claim.Kind == ClaimMount && e.Claim.Node == node:
			c.Since, c.Unknown = e.Claim.Since, e.Claim.Unknown
			conds = append(conds, Cond{Key: r.claimKey(name), Rev: e.Claim.Rev})
		default:
			return txn{}, claimed(e.Claim)
		}
		ops = append(ops, PutLeased(r.claimKey(name), encode(c), lease), r.markOp(c))
		return txn{conds: conds, ops: ops}, nil
	}, nil)
	if err != nil {
		return nil, err
	}
	c.Rev = rev
	return c, nil
}

// Release drops a claim if it is still the one given, and the volume's mount mark with
// it; a claim that expired or was replaced is left alone.
func (r *Registry) Release(ctx context.Context, c *Claim) error {
	_, err := r.store.Txn(ctx, []Cond{{Key: r.claimKey(c.Volume), Rev: c.Rev}}, []Op{Delete(r.claimKey(c.Volume)), Delete(r.markKey(c.Volume))})
	if errors.Is(err, ErrConflict) {
		return nil
	}
	return err
}

// BeginMigration claims the volume for target, on target's lease, so that target may pull
// its data from the owner. It fails with ErrInUse while the volume is mounted (or being
// copied), and with ErrMigrating while another migration runs.
func (r *Registry) BeginMigration(ctx context.Context, name, target string, lease Lease) (*Claim, Volume, error) {
	return r.beginTransfer(ctx, name, target, lease, ClaimMigrate)
}

// BeginCopy claims the volume for target, on target's lease, so that target may pull a
// copy of its data from the owner (which may be target itself) into a new volume: it is
// neither mounted nor moved until FinishCopy or Release. It fails like BeginMigration.
func (r *Registry) BeginCopy(ctx context.Context, name, target string, lease Lease) (*Claim, Volume, error) {
	return r.beginTransfer(ctx, name, target, lease, ClaimCopy)
}

func (r *Registry) beginTransfer(ctx context.Context, name, target string, lease Lease, kind string) (*Claim, Volume, error) {
	var c *Claim
	rev, e, err := r.change(ctx, name, func(e Entry) (txn, error) {
		v := e.Volume
		switch {
		case v.Removing:
			return txn{}, fmt.Errorf("volume %q: %w", name, ErrRemoving)
		case kind == ClaimMigrate && v.Owner == target:
			return txn{}, fmt.Errorf("volume %q is already held by node %q", name, target)
		case e.Claim != nil:
			return txn{}, claimed(e.Claim)
		}
		c = &Claim{Volume: name, Node: target, Kind: kind, Epoch: v.Epoch, From: v.Owner, BaseRev: v.Rev, Since: time.Now().UTC()}
		if kind == ClaimMigrate {
			c.Epoch++ // what the target owns once the migration commits
		}
		return txn{
			conds: []Cond{Unchanged(KV{Key: r.volumeKey(name), Rev: v.Rev}), Absent(r.claimKey(name)), Absent(r.markKey(name))},
			ops:   []Op{PutLeased(r.claimKey(name), encode(c), lease)},
		}, nil
	}, func() error {
		// Someone else got there first, or a node whose lease lapsed mounts it.
		if err := r.refusal(ctx, name); err != nil {
			return err
		}
		return fmt.Errorf("volume %q changed while starting to transfer it: %w", name, ErrConflict)
	})
	if err != nil {
		return nil, e.Volume, err
	}
	c.Rev = rev
	return c, e.Volume, nil
}

// CheckTransfer is what the owner asks before serving data: does target hold a transfer
// claim on the volume at exactly this epoch (a migration's, at the record's epoch plus
// one, or a copy's, at the record's epoch)? Anything else is ErrStaleEpoch.
func (r *Registry) CheckTransfer(ctx context.Context, name, target string, epoch uint64) error {
	e, err := r.Get(ctx, name)
	if err != nil {
		return err
	}
	c := e.Claim
	ok := c != nil && c.Node == target && c.Epoch == epoch &&
		(c.Kind == ClaimMigrate && e.Volume.Epoch+1 == epoch || c.Kind == ClaimCopy && e.Volume.Epoch == epoch)
	if !ok {
		return fmt.Errorf("volume %q: no transfer to node %q at epoch %d (record at epoch %d): %w", name, target, epoch, e.Volume.Epoch, ErrStaleEpoch)
	}
	return nil
}

// FinishCopy ends a copy: it creates the new volume nv (held by the claim's node) and
// drops the copy claim c on the source, in one step. It succeeds only if c still holds
// the source (so nothing mounted or moved it during the copy) and no volume named
// nv.Name exists (ErrVolumeExists).
func (r *Registry) FinishCopy(ctx context.Context, c *Claim, nv Volume) (Volume, error) {
	if nv.Epoch == 0 {
		nv.Epoch = 1
	}
	rev, err := r.store.Txn(ctx,
		[]Cond{{Key: r.claimKey(c.Volume), Rev: c.Rev}, Absent(r.volumeKey(nv.Name))},
		[]Op{Delete(r.claimKey(c.Volume)), Put(r.volumeKey(nv.Name), encode(nv))})
	if errors.Is(err, ErrConflict) {
		if e, gerr := r.Get(ctx, nv.Name); gerr == nil {
			return Volume{}, fmt.Errorf("volume %q exists already, on node %q: %w", nv.Name, e.Volume.Owner, ErrVolumeExists)
		}
		return Volume{}, fmt.Errorf("volume %q: the copy claim of node %q is gone (its lease ended): %w", c.Volume, c.Node, ErrClaimLost)
	}
	if err != nil {
		return Volume{}, err
	}
	nv.Rev = rev
	return nv, nil
}

// CommitMigration makes the migration's target the owner, at the claim's epoch, of the
// copy with root hash root (hex), and turns the claim into the target's mount claim on
// lease (mounts containers; release it if the volume is not mounted). It succeeds only
// if the claim is still held and the record is exactly as it was when the migration
// began.
func (r *Registry) CommitMigration(ctx context.Context, c *Claim, size int64, root string, lease Lease, mounts int) (Volume, *Claim, error) {
	var v Volume
	mc := &Claim{Volume: c.Volume, Node: c.Node, Kind: ClaimMount, Epoch: c.Epoch, Mounts: mounts, Since: time.Now().UTC()}
	rev, _, err := r.change(ctx, c.Volume, func(e Entry) (txn, error) {
		if e.Claim == nil || e.Claim.Rev != c.Rev {
			return txn{}, fmt.Errorf("volume %q: the migration claim of node %q is gone (its lease ended): %w", c.Volume, c.Node, ErrClaimLost)
		}
		if e.Volume.Rev != c.BaseRev || e.Volume.Epoch+1 != c.Epoch {
			return txn{}, fmt.Errorf("volume %q changed during the migration (epoch %d, claim for %d): %w", c.Volume, e.Volume.Epoch, c.Epoch, ErrStaleEpoch)
		}
		v = e.Volume
		v.Owner, v.Epoch, v.Size, v.Root = c.Node, c.Epoch, size, root
		return txn{
			conds: []Cond{{Key: r.claimKey(c.Volume), Rev: c.Rev}, {Key: r.volumeKey(c.Volume), Rev: c.BaseRev}},
			ops: []Op{Put(r.volumeKey(c.Volume), encode(v)), PutLeased(r.claimKey(c.Volume), encode(mc), lease), r.markOp(mc),
				Delete(r.replicaKey(c.Volume, c.Node))}, // the target's replica, if it had one, is the volume now
		}, nil
	}, func() error {
		return fmt.Errorf("volume %q changed while committing its migration to node %q: %w", c.Volume, c.Node, ErrStaleEpoch)
	})
	if err != nil {
		return Volume{}, nil, err
	}
	v.Rev, mc.Rev = rev, rev
	return v, mc, nil
}
