package cluster

import (
	"context"
	"fmt"
	"time"
)

// A volume created with -o from=URL starts empty on the node that created it, which
// fills it from its source in the background. Its seed claim keeps every other node
// from mounting, moving or copying it meanwhile; it lives on the owner's lease, and the
// owner takes it again after a restart (the owner's own record of the volume says the
// fill is not done, and it never sends a volume in that state). FinishSeed records what
// the fill brought and drops the claim in one step.

// BeginSeed claims a volume node holds, on node's lease, while node fills it from
// source (a URL without credentials, shown as the fill's origin). A seed claim node
// held before (under an earlier lease) is taken over; any other claim refuses it.
func (r *Registry) BeginSeed(ctx context.Context, name, node, source string, lease Lease) (*Claim, error) {
	var c *Claim
	rev, _, err := r.change(ctx, name, func(e Entry) (txn, error) {
		v := e.Volume
		switch {
		case v.Removing:
			return txn{}, fmt.Errorf("volume %q: %w", name, ErrRemoving)
		case v.Owner != node:
			return txn{}, fmt.Errorf("volume %q is held by node %q, not %q: %w", name, v.Owner, node, ErrNotOwner)
		case e.Claim != nil && (e.Claim.Kind != ClaimSeed || e.Claim.Node != node):
			return txn{}, claimed(e.Claim)
		}
		c = &Claim{Volume: name, Node: node, Kind: ClaimSeed, Epoch: v.Epoch, From: source, Since: time.Now().UTC()}
		return txn{
			conds: []Cond{Unchanged(KV{Key: r.volumeKey(name), Rev: v.Rev}), claimAs(r.claimKey(name), e.Claim), Absent(r.markKey(name))},
			ops:   []Op{PutLeased(r.claimKey(name), encode(c), lease)},
		}, nil
	}, nil)
	if err != nil {
		return nil, err
	}
	c.Rev = rev
	return c, nil
}

// FinishSeed records the size and root hash (hex) of the tree the fill of a volume
// brought, and drops node's seed claim on it if it still stands. The write carries the
// epoch the fill started at, and is refused with ErrStaleEpoch if the volume is no
// longer node's at that epoch.
func (r *Registry) FinishSeed(ctx context.Context, name, node string, epoch uint64, size int64, root string) (Volume, error) {
	var v Volume
	rev, _, err := r.change(ctx, name, func(e Entry) (txn, error) {
		v = e.Volume
		if v.Owner != node || v.Epoch != epoch || v.Removing {
			return txn{}, fmt.Errorf("volume %q: node %q filled it at epoch %d, but node %q holds it at epoch %d (removing: %t): %w",
				name, node, epoch, v.Owner, v.Epoch, v.Removing, ErrStaleEpoch)
		}
		v.Size, v.Root = size, root
		t := txn{conds: []Cond{Unchanged(KV{Key: r.volumeKey(name), Rev: v.Rev})}, ops: []Op{Put(r.volumeKey(name), encode(v))}}
		if c := e.Claim; c != nil && c.Kind == ClaimSeed && c.Node == node {
			t.conds = append(t.conds, Cond{Key: r.claimKey(name), Rev: c.Rev})
			t.ops = append(t.ops, Delete(r.claimKey(name)), Delete(r.progressKey(name)))
		} else {
			t.conds = append(t.conds, claimAs(r.claimKey(name), e.Claim))
		}
		return t, nil
	}, nil)
	if err != nil {
		return Volume{}, err
	}
	v.Rev = rev
	return v, nil
}

// claimAs is the condition that the claim at key is still c (nil: none).
func claimAs(key string, c *Claim) Cond {
	if c == nil {
		return Absent(key)
	}
	return Cond{Key: key, Rev: c.Rev}
}
