package cluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Failover. A volume's owner that died leaves its record naming it; a replica elsewhere
// becomes the volume only through Promote, one transaction that holds only while the
// owner is provably gone from the store: its lease lapsed (its alive key, on that lease,
// is gone, and with it any claim it held) and the record is still the one the promoting
// node read. Two nodes racing to promote: one transaction wins, the other finds the
// record changed. The promotion is kept (promotions/NAME/EPOCH) for the old owner: when
// it comes back it compares its copy with the root hash the promotion started from, and
// keeps what differs as a diverged copy.

// ErrOwnerAlive means a volume's owner still holds its lease in the store: it may be cut
// off from other nodes but not from the store, and may still write the volume.
var ErrOwnerAlive = errors.New("the owner still holds its lease in the store")

// Promotion records a failover: node To's replica, as synced from From at Epoch with
// root hash Root, became the volume at Epoch+1.
type Promotion struct {
	Volume string `json:"volume"`
	// From owned the volume at Epoch, and was dead when To's replica was promoted.
	From  string `json:"from"`
	Epoch uint64 `json:"epoch"`
	To    string `json:"to"`
	// Root is the promoted replica's root hash (hex) and Bytes its size: the volume as
	// it was when the replica's last sync read it, or the owner last confirmed it.
	Root  string `json:"root"`
	Bytes int64  `json:"bytes"`
	// Lag is how far the replica could be behind when it was promoted, in seconds.
	Lag float64 `json:"lag_seconds"`
	// AcceptLoss says a user promoted it past its volume's max-lag.
	AcceptLoss bool      `json:"accept_loss,omitempty"`
	At         time.Time `json:"at"`
}

func (r *Registry) aliveKey(node string) string { return r.prefix + "alive/" + node }
func (r *Registry) promotionKey(volume string, epoch uint64) string {
	return r.promotionsPrefix(volume) + strconv.FormatUint(epoch, 10)
}
func (r *Registry) promotionsPrefix(volume string) string {
	return r.prefix + "promotions/" + volume + "/"
}

// Attend puts node's alive key on lease: the store's word that the node holds a lease.
// Call it with every new lease.
func (r *Registry) Attend(ctx context.Context, node string, lease Lease) error {
	_, err := r.store.Txn(ctx, nil, []Op{PutLeased(r.aliveKey(node), []byte(time.Now().UTC().Format(time.RFC3339)), lease)})
	return err
}

// Alive reports whether node holds a lease in the store (Attend).
func (r *Registry) Alive(ctx context.Context, node string) (bool, error) {
	_, err := r.store.Get(ctx, r.aliveKey(node))
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// Promote makes the replica rp the volume at the next epoch, its owner being dead. v is
// the volume's record as the caller read it, and lag what it judged the replica's lag;
// acceptLoss says a user accepts losing what the replica lacks. The transaction holds
// only if the record is still v, at rp's epoch, owned by another node; no claim is on
// the volume; the owner holds no lease (ErrOwnerAlive otherwise); and rp's record is as
// rp says. It writes the promotion, removes the old owner's mount mark and rp's replica
// record (the replica is the volume now). It returns the new record.
func (r *Registry) Promote(ctx context.Context, v Volume, rp Replica, lag time.Duration, acceptLoss bool) (Volume, error) {
	switch {
	case v.Removing:
		return Volume{}, fmt.Errorf("volume %q: %w", v.Name, ErrRemoving)
	case rp.Volume != v.Name || rp.Node == v.Owner || rp.Epoch != v.Epoch || rp.Rev == 0:
		return Volume{}, fmt.Errorf("volume %q: node %q's replica (epoch %d) is not one of node %q's copy at epoch %d: %w",
			v.Name, rp.Node, rp.Epoch, v.Owner, v.Epoch, ErrStaleEpoch)
	}
	p := Promotion{Volume: v.Name, From: v.Owner, Epoch: v.Epoch, To: rp.Node, Root: rp.Root, Bytes: rp.Bytes, Lag: lag.Seconds(),
		AcceptLoss: acceptLoss, At: time.Now().UTC()}
	nv := v
	nv.Owner, nv.Epoch, nv.Root, nv.Size = rp.Node, v.Epoch+1, rp.Root, rp.Bytes
	rev, err := r.store.Txn(ctx,
		[]Cond{Unchanged(KV{Key: r.volumeKey(v.Name), Rev: v.Rev}), Absent(r.claimKey(v.Name)), Absent(r.aliveKey(v.Owner)),
			Unchanged(KV{Key: r.replicaKey(v.Name, rp.Node), Rev: rp.Rev})},
		[]Op{Put(r.volumeKey(v.Name), encode(nv)), Put(r.promotionKey(v.Name, v.Epoch), encode(p)), Delete(r.markKey(v.Name)),
			Delete(r.replicaKey(v.Name, rp.Node))})
	if errors.Is(err, ErrConflict) {
		if alive, aerr := r.Alive(ctx, v.Owner); aerr == nil && alive {
			return Volume{}, fmt.Errorf("volume %q: node %q: %w", v.Name, v.Owner, ErrOwnerAlive)
		}
		e, gerr := r.Get(ctx, v.Name)
		if gerr == nil && e.Claim != nil {
			return Volume{}, claimed(e.Claim)
		}
		return Volume{}, fmt.Errorf("volume %q changed while promoting node %q's replica (someone else may have promoted one): %w", v.Name, rp.Node, ErrStaleEpoch)
	}
	if err != nil {
		return Volume{}, err
	}
	nv.Rev = rev
	return nv, nil
}

// PromotionAt reads the promotion that ended the epoch epoch of a volume; nil if the
// volume left that epoch otherwise (a move, or not yet).
func (r *Registry) PromotionAt(ctx context.Context, volume string, epoch uint64) (*Promotion, error) {
	p, _, err := read[Promotion](ctx, r.store, r.promotionKey(volume, epoch), "promotion record")
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	return p, err
}
