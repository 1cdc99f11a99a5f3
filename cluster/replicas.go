package cluster

import (
	"context"
	"fmt"
	"time"
)

// Replica is the record of one node's warm copy of a volume held by another node. The
// replica's node writes it after each sync it completed, once the synced tree is in
// place: the record never says more than the node's disk holds.
type Replica struct {
	Volume string `json:"volume"`
	Node   string `json:"node"`
	// Epoch is the owner's epoch the copy was synced at.
	Epoch uint64 `json:"epoch"`
	// Started is when the last completed sync began: the copy holds every change the
	// owner's volume had before then. Synced is when it completed.
	Started time.Time `json:"started"`
	Synced  time.Time `json:"synced"`
	// Clean says the sync began while no container on the owner mounted the volume: the
	// copy is the volume as its last container left it, and stays current until it is
	// mounted again.
	Clean bool `json:"clean,omitempty"`
	// Current is when the owner last found its volume unchanged since this sync read it
	// (ConfirmReplicas): the copy held every change the volume had before then.
	Current time.Time `json:"current,omitzero"`
	// Root is the copy's root hash (hex), verified with the owner; Bytes its size; Sent
	// the content bytes the sync moved.
	Root  string `json:"root"`
	Bytes int64  `json:"bytes"`
	Sent  int64  `json:"sent"`
	Rev   int64  `json:"-"`
	// Unknown keeps the fields a later release wrote.
	Unknown `json:"-"`
}

// Lag is how far the replica may be behind its volume at now: nothing for a clean copy
// of the current epoch, otherwise the time since it was last known current (its last
// sync began, or the owner confirmed it since; changes made after may be missing).
// mounted says whether a container on the owner mounts the volume now.
func (rp Replica) Lag(v Volume, mounted bool, now time.Time) time.Duration {
	switch {
	case rp.Epoch == v.Epoch && rp.Clean && !mounted:
		return 0
	case rp.Started.IsZero(): // a copy kept from before a move, not synced since
		return max(now.Sub(v.Created), 0)
	}
	known := rp.Started
	if rp.Epoch == v.Epoch && rp.Current.After(known) {
		known = rp.Current
	}
	return max(now.Sub(known), 0)
}

func (r *Registry) replicaKey(volume, node string) string { return r.replicasPrefix(volume) + node }
func (r *Registry) replicasPrefix(volume string) string   { return r.prefix + "replicas/" + volume + "/" }

// PutReplica records a sync that node completed of a volume, at the owner's epoch. It is
// fenced: it succeeds only while the volume's record names another node as owner at that
// epoch (ErrStaleEpoch otherwise), so a sync from an owner that lost the volume is never
// recorded.
func (r *Registry) PutReplica(ctx context.Context, rp Replica) error {
	_, _, err := r.change(ctx, rp.Volume, func(e Entry) (txn, error) {
		v := e.Volume
		if v.Removing {
			return txn{}, fmt.Errorf("volume %q: %w", rp.Volume, ErrRemoving)
		}
		if v.Epoch != rp.Epoch || v.Owner == rp.Node {
			return txn{}, fmt.Errorf("volume %q: node %q synced a replica at epoch %d, but node %q owns it at epoch %d: %w",
				rp.Volume, rp.Node, rp.Epoch, v.Owner, v.Epoch, ErrStaleEpoch)
		}
		return txn{conds: []Cond{Unchanged(KV{Key: r.volumeKey(rp.Volume), Rev: v.Rev})},
			ops: []Op{Put(r.replicaKey(rp.Volume, rp.Node), encode(rp))}}, nil
	}, nil)
	return err
}

// ConfirmReplicas records that the owner of a volume at epoch found it, at at, as it was
// when the replicas with root hash root synced it: they were current then. It is what
// keeps the lag of a mounted volume that does not change from growing, for one store
// write per check instead of a sync. It is fenced like PutReplica (ErrStaleEpoch unless
// the volume's record names owner at epoch), and replicas of another root or epoch are
// left as they are. It returns the nodes whose records it updated.
func (r *Registry) ConfirmReplicas(ctx context.Context, volume, owner string, epoch uint64, root string, at time.Time) ([]string, error) {
	var nodes []string
	_, _, err := r.change(ctx, volume, func(e Entry) (txn, error) {
		v := e.Volume
		if v.Removing || v.Owner != owner || v.Epoch != epoch {
			return txn{}, fmt.Errorf("volume %q: node %q confirmed its replicas at epoch %d, but node %q owns it at epoch %d: %w",
				volume, owner, epoch, v.Owner, v.Epoch, ErrStaleEpoch)
		}
		kvs, err := r.store.List(ctx, r.replicasPrefix(volume))
		if err != nil {
			return txn{}, err
		}
		t := txn{conds: []Cond{Unchanged(KV{Key: r.volumeKey(volume), Rev: v.Rev})}}
		nodes = nodes[:0]
		for _, kv := range kvs {
			rp, err := decode[Replica](kv, "replica record")
			if err != nil {
				return txn{}, err
			}
			if rp.Epoch != epoch || rp.Root != root || rp.Node == owner || !at.After(rp.Current) {
				continue
			}
			rp.Current = at
			t.conds = append(t.conds, Unchanged(kv))
			t.ops = append(t.ops, Put(kv.Key, encode(rp)))
			nodes = append(nodes, rp.Node)
		}
		if len(t.ops) == 0 {
			return txn{}, errUnchanged
		}
		return t, nil
	}, nil)
	if err != nil {
		return nil, err
	}
	return nodes, nil
}

// uncleanReplicas reads the records of the volume's replicas that say they are clean
// (synced while nothing mounted the volume) and returns them as they must be once it is
// mounted: not clean, each with the revision it was read at, for the caller's
// transaction to condition on.
func (r *Registry) uncleanReplicas(ctx context.Context, volume string) ([]KV, error) {
	kvs, err := r.store.List(ctx, r.replicasPrefix(volume))
	if err != nil {
		return nil, err
	}
	var out []KV
	for _, kv := range kvs {
		rp, err := decode[Replica](kv, "replica record")
		if err != nil {
			return nil, err
		}
		if rp.Clean {
			rp.Clean = false
			out = append(out, KV{Key: kv.Key, Value: encode(rp), Rev: kv.Rev})
		}
	}
	return out, nil
}

// Replicas reads the replica records of a volume, sorted by node.
func (r *Registry) Replicas(ctx context.Context, volume string) ([]Replica, error) {
	kvs, err := r.store.List(ctx, r.replicasPrefix(volume))
	if err != nil {
		return nil, err
	}
	out := make([]Replica, 0, len(kvs))
	for _, kv := range kvs {
		rp, err := decode[Replica](kv, "replica record")
		if err != nil {
			return nil, err
		}
		rp.Rev = kv.Rev
		out = append(out, *rp)
	}
	return out, nil
}

// AllReplicas reads every replica record, by volume.
func (r *Registry) AllReplicas(ctx context.Context) (map[string][]Replica, error) {
	kvs, err := r.store.List(ctx, r.prefix+"replicas/")
	if err != nil {
		return nil, err
	}
	out := map[string][]Replica{}
	for _, kv := range kvs {
		rp, err := decode[Replica](kv, "replica record")
		if err != nil {
			return nil, err
		}
		rp.Rev = kv.Rev
		out[rp.Volume] = append(out[rp.Volume], *rp)
	}
	return out, nil
}

// DeleteReplica removes node's replica record of a volume: the node dropped its copy,
// or took the volume over.
func (r *Registry) DeleteReplica(ctx context.Context, volume, node string) error {
	_, err := r.store.Txn(ctx, nil, []Op{Delete(r.replicaKey(volume, node))})
	return err
}
