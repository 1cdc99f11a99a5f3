package cluster

import (
	"context"
	"errors"
	"fmt"
)

// A volume is removed in two steps: MarkRemoving marks its record, its owner deletes the
// data once it has proof the removal was asked (Volume.RemovedBy), then FinishRemoval
// deletes the record. A record marked but not yet deleted keeps the name taken.

// RemoveOptions say how MarkRemoving treats a volume.
type RemoveOptions struct {
	// By is the node the removal is asked on (Volume.RemovedBy).
	By string
	// Force removes a volume mounted on a node whose lease lapsed (its mark is dropped):
	// for a node the operator knows is gone for good.
	Force bool
}

// MarkRemoving starts the removal of an idle volume: the record stays, marked, until its
// owner has deleted the data (FinishRemoval). It fails with ErrInUse or ErrMigrating while
// a claim holds the volume, and with a LapsedError (ErrMountLapsed) while it is mounted on
// a node whose lease lapsed, unless forced. Marking a volume that is already being
// removed succeeds, and makes o.By its requester.
func (r *Registry) MarkRemoving(ctx context.Context, name string, o RemoveOptions) (Volume, error) {
	var v Volume
	rev, _, err := r.change(ctx, name, func(e Entry) (txn, error) {
		v = e.Volume
		if e.Claim != nil {
			return txn{}, claimed(e.Claim)
		}
		if v.Removing && v.RemovedBy == o.By {
			return txn{}, errUnchanged
		}
		v.Removing, v.RemovedBy = true, o.By
		t := txn{
			conds: []Cond{Unchanged(KV{Key: r.volumeKey(name), Rev: v.Rev}), Absent(r.claimKey(name))},
			ops:   []Op{Put(r.volumeKey(name), encode(v))},
		}
		if o.Force {
			t.ops = append(t.ops, Delete(r.markKey(name)))
		} else {
			t.conds = append(t.conds, Absent(r.markKey(name)))
		}
		return t, nil
	}, func() error {
		if err := r.refusal(ctx, name); errors.Is(err, ErrMountLapsed) {
			return err
		}
		return nil
	})
	if err != nil {
		return v, err
	}
	v.Rev = rev
	return v, nil
}

// FinishRemoval deletes the record of a volume marked for removal, once its owner has
// deleted the data, and the records of its replicas and promotions with it.
func (r *Registry) FinishRemoval(ctx context.Context, v Volume) error {
	ops := []Op{Delete(r.volumeKey(v.Name))}
	for _, prefix := range []string{r.replicasPrefix(v.Name), r.promotionsPrefix(v.Name)} {
		kvs, err := r.store.List(ctx, prefix)
		if err != nil {
			return err
		}
		for _, kv := range kvs {
			ops = append(ops, Delete(kv.Key))
		}
	}
	_, err := r.store.Txn(ctx, []Cond{Unchanged(KV{Key: r.volumeKey(v.Name), Rev: v.Rev})}, ops)
	if errors.Is(err, ErrConflict) {
		return fmt.Errorf("volume %q changed while being removed: %w", v.Name, ErrConflict)
	}
	return err
}
