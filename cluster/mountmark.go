package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// A claim lives on its holder's lease, so that a node that dies or is cut off frees the
// volumes it holds. But a node that stops renewing its lease may still have containers
// writing to a volume: it may be paused, or cut off from the store only. So a mount also
// leaves a mark that no lease carries: while it is there, the volume is not removed,
// moved or copied, whatever became of the claim. The owner takes the mark away when its
// last container unmounts, or when it comes back with none mounted; an operator who knows
// the node is gone for good removes the volume with force.

// ErrMountLapsed means the volume is mounted on a node whose lease lapsed: the node is
// down, paused or cut off from the store, and its containers may still use the volume.
var ErrMountLapsed = errors.New("mounted on a node whose lease lapsed")

// MountMark records, apart from any lease, that a node mounts a volume.
type MountMark struct {
	Volume string `json:"volume"`
	Node   string `json:"node"`
	// Mounts is the container count when the mark was last written.
	Mounts int       `json:"mounts"`
	Epoch  uint64    `json:"epoch"`
	Since  time.Time `json:"since"`
}

// LapsedError is a refusal for a volume whose mark names a node that no longer holds its
// mount claim.
type LapsedError struct {
	Mark MountMark
}

func (e *LapsedError) Error() string {
	return fmt.Sprintf("volume %q is mounted on node %q by %d container(s) since %s, but that node's lease in the store lapsed",
		e.Mark.Volume, e.Mark.Node, e.Mark.Mounts, e.Mark.Since.Format(time.RFC3339))
}

func (e *LapsedError) Unwrap() error { return ErrMountLapsed }

// markOp is the operation that makes the mark of claim c say what it says: there while
// it counts containers, gone when it counts none.
func (r *Registry) markOp(c *Claim) Op {
	if c.Mounts == 0 {
		return Delete(r.markKey(c.Volume))
	}
	return Put(r.markKey(c.Volume), encode(MountMark{Volume: c.Volume, Node: c.Node, Mounts: c.Mounts, Epoch: c.Epoch, Since: c.Since}))
}

// Mark reads the mount mark of a volume, or nil if it has none.
func (r *Registry) Mark(ctx context.Context, name string) (*MountMark, error) {
	m, _, err := read[MountMark](ctx, r.store, r.markKey(name), "mount mark")
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	return m, err
}

// ClearMark removes node's mount mark from a volume it no longer mounts, unless the
// volume is claimed meanwhile (a claim keeps its own mark right).
func (r *Registry) ClearMark(ctx context.Context, name, node string) error {
	m, err := r.Mark(ctx, name)
	if err != nil || m == nil || m.Node != node {
		return err
	}
	_, err = r.store.Txn(ctx, []Cond{Absent(r.claimKey(name))}, []Op{Delete(r.markKey(name))})
	if errors.Is(err, ErrConflict) {
		return nil
	}
	return err
}

// refusal explains why a transaction conditioned on a volume being unclaimed and
// unmarked did not hold: the claim now on it, the mark of a node whose lease lapsed, or
// neither (the record changed: look again).
func (r *Registry) refusal(ctx context.Context, name string) error {
	e, err := r.Get(ctx, name)
	if err != nil {
		return err
	}
	if e.Claim != nil {
		return claimed(e.Claim)
	}
	m, err := r.Mark(ctx, name)
	if err != nil {
		return err
	}
	if m != nil {
		return &LapsedError{Mark: *m}
	}
	return nil
}
