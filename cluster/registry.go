package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Errors of volume ownership; callers tell them apart with errors.Is.
var (
	// ErrVolumeNotFound means no volume of that name exists in the cluster.
	ErrVolumeNotFound = errors.New("no such volume in the cluster")
	// ErrInUse means the volume is mounted on a node.
	ErrInUse = errors.New("volume in use")
	// ErrMigrating means the volume is moving to another node.
	ErrMigrating = errors.New("volume is migrating")
	// ErrNotOwner means the node does not hold the volume.
	ErrNotOwner = errors.New("volume is held by another node")
	// ErrStaleEpoch means a write carried an epoch older than the record's: ownership
	// changed since the writer last looked. It is refused.
	ErrStaleEpoch = errors.New("stale epoch")
	// ErrClaimLost means a claim expired (its lease ended) or was replaced.
	ErrClaimLost = errors.New("claim lost")
	// ErrRemoving means the volume is being removed.
	ErrRemoving = errors.New("volume is being removed")
	// ErrVolumeExists means a volume of that name exists already.
	ErrVolumeExists = errors.New("volume exists")
)

// DefaultPrefix is where drayage keeps its keys in the store.
const DefaultPrefix = "drayage/"

// States of a volume, derived from its claim.
const (
	StateIdle      = "idle"
	StateMounted   = "mounted"
	StateMigrating = "migrating"
	StateCopying   = "copying"
	StateRemoving  = "removing"
)

// Volume is the persistent record of a volume.
type Volume struct {
	Name string `json:"name"`
	// Owner is the node whose disk holds the volume's data.
	Owner string `json:"owner"`
	// Epoch is the fencing token: it increases on every change of owner.
	Epoch   uint64            `json:"epoch"`
	Size    int64             `json:"size"`
	Options map[string]string `json:"options,omitempty"`
	Created time.Time         `json:"created"`
	// Removing marks a removal in progress: the owner deletes its data, then the record.
	// The removal is of the copy at Epoch: a node holding a copy of a later epoch (the
	// record was rolled back) does not obey it.
	Removing bool `json:"removing,omitempty"`
	// RemovedBy is the node the removal was asked on: the owner deletes its copy only
	// once that node confirms it asked (a record alone is no proof).
	RemovedBy string `json:"removed_by,omitempty"`
	// Root is the root hash (hex) of the copy its owner committed at Epoch after pulling
	// it, verified; empty for a volume made where it is.
	Root string `json:"root,omitempty"`
	// Rev is the store revision the record was read at.
	Rev int64 `json:"-"`
}

// Claim kinds.
const (
	ClaimMount   = "mount"
	ClaimMigrate = "migrate"
	// ClaimCopy holds a volume while a node copies it into a new volume: the volume is
	// neither mounted nor moved meanwhile, and its owner sends it only to that node.
	ClaimCopy = "copy"
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
}

// Entry is a volume with its current claim, if any, and its mount mark (List reads it;
// Get does not).
type Entry struct {
	Volume Volume
	Claim  *Claim
	Mark   *MountMark
}

// State derives the volume's state from its record, claim and mark.
func (e Entry) State() string {
	switch {
	case e.Volume.Removing:
		return StateRemoving
	case e.Claim == nil && e.Mark != nil:
		return StateMounted // on a node whose lease lapsed
	case e.Claim == nil:
		return StateIdle
	case e.Claim.Kind == ClaimMigrate:
		return StateMigrating
	case e.Claim.Kind == ClaimCopy:
		return StateCopying
	default:
		return StateMounted
	}
}

// Node is the record of a cluster member.
type Node struct {
	Name      string    `json:"name"`
	Addresses []string  `json:"addresses,omitempty"`
	Version   string    `json:"version,omitempty"`
	Started   time.Time `json:"started"`
	LastSeen  time.Time `json:"last_seen"`
}

// Registry keeps volume records, claims and node records in a Store. It is safe for
// concurrent use; every change is a transaction conditioned on what was read.
type Registry struct {
	store  Store
	prefix string
}

// NewRegistry returns a Registry over store, keeping its keys under prefix
// (DefaultPrefix if empty).
func NewRegistry(store Store, prefix string) *Registry {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return &Registry{store: store, prefix: prefix}
}

// Store is the store the registry uses.
func (r *Registry) Store() Store { return r.store }

func (r *Registry) volumeKey(name string) string { return r.prefix + "volumes/" + name }
func (r *Registry) claimKey(name string) string  { return r.prefix + "claims/" + name }
func (r *Registry) nodeKey(name string) string   { return r.prefix + "nodes/" + name }
func (r *Registry) progressKey(name string) string {
	return r.prefix + "progress/" + name
}

// VolumesPrefix is the key prefix of volume records (for watching).
func (r *Registry) VolumesPrefix() string { return r.prefix + "volumes/" }

// ClaimsPrefix is the key prefix of claims (for watching).
func (r *Registry) ClaimsPrefix() string { return r.prefix + "claims/" }

// VolumeName returns the volume a key under VolumesPrefix or ClaimsPrefix is about.
func (r *Registry) VolumeName(key string) string {
	for _, p := range []string{r.VolumesPrefix(), r.ClaimsPrefix()} {
		if strings.HasPrefix(key, p) {
			return strings.TrimPrefix(key, p)
		}
	}
	return ""
}

func encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("encode %T: %v", v, err)) // plain structs always encode
	}
	return b
}

func decodeVolume(kv KV) (Volume, error) {
	var v Volume
	if err := json.Unmarshal(kv.Value, &v); err != nil {
		return v, fmt.Errorf("decode volume record %s: %w", kv.Key, err)
	}
	v.Rev = kv.Rev
	return v, nil
}

func decodeClaim(kv KV) (*Claim, error) {
	var c Claim
	if err := json.Unmarshal(kv.Value, &c); err != nil {
		return nil, fmt.Errorf("decode claim %s: %w", kv.Key, err)
	}
	c.Rev = kv.Rev
	return &c, nil
}

// Get reads a volume and its claim.
func (r *Registry) Get(ctx context.Context, name string) (Entry, error) {
	kv, err := r.store.Get(ctx, r.volumeKey(name))
	if errors.Is(err, ErrNotFound) {
		return Entry{}, fmt.Errorf("volume %q: %w", name, ErrVolumeNotFound)
	}
	if err != nil {
		return Entry{}, err
	}
	v, err := decodeVolume(kv)
	if err != nil {
		return Entry{}, err
	}
	e := Entry{Volume: v}
	ckv, err := r.store.Get(ctx, r.claimKey(name))
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return Entry{}, err
	default:
		if e.Claim, err = decodeClaim(ckv); err != nil {
			return Entry{}, err
		}
	}
	return e, nil
}

// List reads every volume with its claim, sorted by name.
func (r *Registry) List(ctx context.Context) ([]Entry, error) {
	vkvs, err := r.store.List(ctx, r.VolumesPrefix())
	if err != nil {
		return nil, err
	}
	ckvs, err := r.store.List(ctx, r.ClaimsPrefix())
	if err != nil {
		return nil, err
	}
	mkvs, err := r.store.List(ctx, r.MarksPrefix())
	if err != nil {
		return nil, err
	}
	marks := make(map[string]*MountMark, len(mkvs))
	for _, kv := range mkvs {
		var m MountMark
		if err := json.Unmarshal(kv.Value, &m); err != nil {
			return nil, fmt.Errorf("decode mount mark %s: %w", kv.Key, err)
		}
		marks[strings.TrimPrefix(kv.Key, r.MarksPrefix())] = &m
	}
	claims := make(map[string]*Claim, len(ckvs))
	for _, kv := range ckvs {
		c, err := decodeClaim(kv)
		if err != nil {
			return nil, err
		}
		claims[r.VolumeName(kv.Key)] = c
	}
	out := make([]Entry, 0, len(vkvs))
	for _, kv := range vkvs {
		v, err := decodeVolume(kv)
		if err != nil {
			return nil, err
		}
		name := r.VolumeName(kv.Key)
		out = append(out, Entry{Volume: v, Claim: claims[name], Mark: marks[name]})
	}
	return out, nil
}

// Create adds a volume record unless the name exists. It returns the record now in the
// store and whether this call created it.
func (r *Registry) Create(ctx context.Context, v Volume) (Entry, bool, error) {
	if v.Epoch == 0 {
		v.Epoch = 1
	}
	rev, err := r.store.Txn(ctx, []Cond{Absent(r.volumeKey(v.Name))}, []Op{Put(r.volumeKey(v.Name), encode(v))})
	if errors.Is(err, ErrConflict) {
		e, err := r.Get(ctx, v.Name)
		if errors.Is(err, ErrVolumeNotFound) {
			return r.Create(ctx, v) // removed in between: try again
		}
		return e, false, err
	}
	if err != nil {
		return Entry{}, false, err
	}
	v.Rev = rev
	return Entry{Volume: v}, true, nil
}

// ClaimMount records that node mounts the volume, mounts times, on lease. Only the owner
// may; the claim is refused while another claim (a migration) holds the volume. Calling
// it again updates the count, or moves the claim to a new lease.
func (r *Registry) ClaimMount(ctx context.Context, name, node string, lease Lease, mounts int) (*Claim, error) {
	for {
		e, err := r.Get(ctx, name)
		if err != nil {
			return nil, err
		}
		v := e.Volume
		if v.Removing {
			return nil, fmt.Errorf("volume %q: %w", name, ErrRemoving)
		}
		if v.Owner != node {
			return nil, fmt.Errorf("volume %q is held by node %q, not %q: %w", name, v.Owner, node, ErrNotOwner)
		}
		c := &Claim{Volume: name, Node: node, Kind: ClaimMount, Epoch: v.Epoch, Mounts: mounts, Since: time.Now().UTC()}
		conds := []Cond{Unchanged(KV{Key: r.volumeKey(name), Rev: v.Rev})}
		switch {
		case e.Claim == nil:
			conds = append(conds, Absent(r.claimKey(name)))
		case e.Claim.Kind == ClaimMount && e.Claim.Node == node:
			c.Since = e.Claim.Since
			conds = append(conds, Cond{Key: r.claimKey(name), Rev: e.Claim.Rev})
		default:
			return nil, claimed(e.Claim)
		}
		rev, err := r.store.Txn(ctx, conds, []Op{PutLeased(r.claimKey(name), encode(c), lease), r.markOp(c)})
		if errors.Is(err, ErrConflict) {
			continue // the record or the claim changed: look again
		}
		if err != nil {
			return nil, err
		}
		c.Rev = rev
		return c, nil
	}
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

// claimed says who holds the volume under claim c: ErrMigrating for a migration,
// ErrInUse for the others.
func claimed(c *Claim) error {
	switch c.Kind {
	case ClaimMigrate:
		return fmt.Errorf("volume %q is moving to node %q: %w", c.Volume, c.Node, ErrMigrating)
	case ClaimCopy:
		return fmt.Errorf("volume %q is being copied to node %q: %w", c.Volume, c.Node, ErrInUse)
	}
	return fmt.Errorf("volume %q is mounted on node %q by %d container(s): %w", c.Volume, c.Node, c.Mounts, ErrInUse)
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
	e, err := r.Get(ctx, name)
	if err != nil {
		return nil, Volume{}, err
	}
	v := e.Volume
	switch {
	case v.Removing:
		return nil, v, fmt.Errorf("volume %q: %w", name, ErrRemoving)
	case kind == ClaimMigrate && v.Owner == target:
		return nil, v, fmt.Errorf("volume %q is already held by node %q", name, target)
	case e.Claim != nil:
		return nil, v, claimed(e.Claim)
	}
	c := &Claim{Volume: name, Node: target, Kind: kind, Epoch: v.Epoch, From: v.Owner, BaseRev: v.Rev, Since: time.Now().UTC()}
	if kind == ClaimMigrate {
		c.Epoch++ // what the target owns once the migration commits
	}
	rev, err := r.store.Txn(ctx,
		[]Cond{Unchanged(KV{Key: r.volumeKey(name), Rev: v.Rev}), Absent(r.claimKey(name)), Absent(r.markKey(name))},
		[]Op{PutLeased(r.claimKey(name), encode(c), lease)})
	if errors.Is(err, ErrConflict) {
		// Someone else got there first, or a node whose lease lapsed mounts it.
		if rerr := r.refusal(ctx, name); rerr != nil {
			return nil, v, rerr
		}
		return nil, v, fmt.Errorf("volume %q changed while starting to transfer it: %w", name, ErrConflict)
	}
	if err != nil {
		return nil, v, err
	}
	c.Rev = rev
	return c, v, nil
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
	e, err := r.Get(ctx, c.Volume)
	if err != nil {
		return Volume{}, nil, err
	}
	if e.Claim == nil || e.Claim.Rev != c.Rev {
		return Volume{}, nil, fmt.Errorf("volume %q: the migration claim of node %q is gone (its lease ended): %w", c.Volume, c.Node, ErrClaimLost)
	}
	if e.Volume.Rev != c.BaseRev || e.Volume.Epoch+1 != c.Epoch {
		return Volume{}, nil, fmt.Errorf("volume %q changed during the migration (epoch %d, claim for %d): %w", c.Volume, e.Volume.Epoch, c.Epoch, ErrStaleEpoch)
	}
	v := e.Volume
	v.Owner, v.Epoch, v.Size, v.Root = c.Node, c.Epoch, size, root
	mc := &Claim{Volume: c.Volume, Node: c.Node, Kind: ClaimMount, Epoch: c.Epoch, Mounts: mounts, Since: time.Now().UTC()}
	rev, err := r.store.Txn(ctx,
		[]Cond{{Key: r.claimKey(c.Volume), Rev: c.Rev}, {Key: r.volumeKey(c.Volume), Rev: c.BaseRev}},
		[]Op{Put(r.volumeKey(c.Volume), encode(v)), PutLeased(r.claimKey(c.Volume), encode(mc), lease), r.markOp(mc)})
	if errors.Is(err, ErrConflict) {
		return Volume{}, nil, fmt.Errorf("volume %q changed while committing its migration to node %q: %w", c.Volume, c.Node, ErrStaleEpoch)
	}
	if err != nil {
		return Volume{}, nil, err
	}
	v.Rev, mc.Rev = rev, rev
	return v, mc, nil
}

// UpdateSize records the size the owner measured. The write carries the owner's epoch
// and is refused with ErrStaleEpoch if ownership moved on.
func (r *Registry) UpdateSize(ctx context.Context, name, node string, epoch uint64, size int64) error {
	for {
		e, err := r.Get(ctx, name)
		if err != nil {
			return err
		}
		v := e.Volume
		if v.Owner != node || v.Epoch != epoch {
			return fmt.Errorf("volume %q: node %q writes at epoch %d, but node %q owns it at epoch %d: %w", name, node, epoch, v.Owner, v.Epoch, ErrStaleEpoch)
		}
		if v.Size == size {
			return nil
		}
		v.Size = size
		_, err = r.store.Txn(ctx, []Cond{Unchanged(KV{Key: r.volumeKey(name), Rev: v.Rev})}, []Op{Put(r.volumeKey(name), encode(v))})
		if !errors.Is(err, ErrConflict) {
			return err
		}
	}
}

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
	for {
		e, err := r.Get(ctx, name)
		if err != nil {
			return Volume{}, err
		}
		v := e.Volume
		if e.Claim != nil {
			return v, claimed(e.Claim)
		}
		if v.Removing && v.RemovedBy == o.By {
			return v, nil
		}
		v.Removing, v.RemovedBy = true, o.By
		conds := []Cond{Unchanged(KV{Key: r.volumeKey(name), Rev: v.Rev}), Absent(r.claimKey(name))}
		ops := []Op{Put(r.volumeKey(name), encode(v))}
		if o.Force {
			ops = append(ops, Delete(r.markKey(name)))
		} else {
			conds = append(conds, Absent(r.markKey(name)))
		}
		rev, err := r.store.Txn(ctx, conds, ops)
		if errors.Is(err, ErrConflict) {
			if rerr := r.refusal(ctx, name); errors.Is(rerr, ErrMountLapsed) {
				return v, rerr
			}
			continue
		}
		if err != nil {
			return v, err
		}
		v.Rev = rev
		return v, nil
	}
}

// Reclaim writes the record of a volume again, as held by node at epoch with root hash
// root, no longer marked for removal: what a node does whose copy is newer than the
// record (the store was restored from an old snapshot, or the record was forged). It
// succeeds only if the record is still exactly v, and never lowers the epoch.
func (r *Registry) Reclaim(ctx context.Context, v Volume, node string, epoch uint64, root string) (Volume, error) {
	if epoch < v.Epoch {
		return v, fmt.Errorf("volume %q: node %q would write epoch %d over epoch %d: %w", v.Name, node, epoch, v.Epoch, ErrStaleEpoch)
	}
	nv := v
	nv.Owner, nv.Epoch, nv.Root, nv.Removing = node, epoch, root, false
	rev, err := r.store.Txn(ctx, []Cond{Unchanged(KV{Key: r.volumeKey(v.Name), Rev: v.Rev})}, []Op{Put(r.volumeKey(v.Name), encode(nv))})
	if err != nil {
		return v, err
	}
	nv.Rev = rev
	return nv, nil
}

// FinishRemoval deletes the record of a volume marked for removal, once its owner has
// deleted the data.
func (r *Registry) FinishRemoval(ctx context.Context, v Volume) error {
	_, err := r.store.Txn(ctx, []Cond{Unchanged(KV{Key: r.volumeKey(v.Name), Rev: v.Rev})}, []Op{Delete(r.volumeKey(v.Name))})
	if errors.Is(err, ErrConflict) {
		return fmt.Errorf("volume %q changed while being removed: %w", v.Name, ErrConflict)
	}
	return err
}

// PutNode writes a node record.
func (r *Registry) PutNode(ctx context.Context, n Node) error {
	_, err := r.store.Txn(ctx, nil, []Op{Put(r.nodeKey(n.Name), encode(n))})
	return err
}

// Node reads one node record. It returns ErrNotFound if the node has none.
func (r *Registry) Node(ctx context.Context, name string) (Node, error) {
	kv, err := r.store.Get(ctx, r.nodeKey(name))
	if err != nil {
		return Node{}, err
	}
	var n Node
	if err := json.Unmarshal(kv.Value, &n); err != nil {
		return Node{}, fmt.Errorf("decode node record %s: %w", kv.Key, err)
	}
	return n, nil
}

// Nodes lists the node records, sorted by name.
func (r *Registry) Nodes(ctx context.Context) ([]Node, error) {
	kvs, err := r.store.List(ctx, r.prefix+"nodes/")
	if err != nil {
		return nil, err
	}
	out := make([]Node, 0, len(kvs))
	for _, kv := range kvs {
		var n Node
		if err := json.Unmarshal(kv.Value, &n); err != nil {
			return nil, fmt.Errorf("decode node record %s: %w", kv.Key, err)
		}
		out = append(out, n)
	}
	return out, nil
}

// Progress is how far a transfer of a volume has come, as the receiving node records it
// for every node to see. It lives on the receiver's lease, beside its claim.
type Progress struct {
	Volume string `json:"volume"`
	// Kind is the kind of the claim the transfer runs under (ClaimMigrate, ...); Copy
	// names the new volume of a copy.
	Kind string `json:"kind"`
	Copy string `json:"copy,omitempty"`
	// Node receives from From.
	Node string `json:"node"`
	From string `json:"from"`
	// Bytes of Total and Files of TotalFiles have arrived; Rate is in bytes per second.
	Bytes      int64     `json:"bytes"`
	Total      int64     `json:"total"`
	Files      int       `json:"files"`
	TotalFiles int       `json:"total_files"`
	Rate       int64     `json:"rate"`
	Started    time.Time `json:"started"`
	Updated    time.Time `json:"updated"`
}

// PutProgress records the progress of the transfer that claim c (a migration's) runs
// under, on lease. It is refused with ErrClaimLost once the claim is no longer the one
// given, so a transfer that lost its claim never overwrites the next one's progress.
func (r *Registry) PutProgress(ctx context.Context, c *Claim, p Progress, lease Lease) error {
	p.Volume = c.Volume
	_, err := r.store.Txn(ctx, []Cond{{Key: r.claimKey(c.Volume), Rev: c.Rev}}, []Op{PutLeased(r.progressKey(c.Volume), encode(p), lease)})
	if errors.Is(err, ErrConflict) {
		return fmt.Errorf("volume %q: the claim of node %q is gone: %w", c.Volume, c.Node, ErrClaimLost)
	}
	return err
}

// DeleteProgress deletes the progress of the transfer that claim c runs under, while c
// still holds the volume (if it does not, the progress went with its lease or belongs to
// another transfer).
func (r *Registry) DeleteProgress(ctx context.Context, c *Claim) error {
	_, err := r.store.Txn(ctx, []Cond{{Key: r.claimKey(c.Volume), Rev: c.Rev}}, []Op{Delete(r.progressKey(c.Volume))})
	if errors.Is(err, ErrConflict) {
		return nil
	}
	return err
}

// Progress reads the progress of a transfer of the volume, or nil if none is recorded.
func (r *Registry) Progress(ctx context.Context, name string) (*Progress, error) {
	kv, err := r.store.Get(ctx, r.progressKey(name))
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var p Progress
	if err := json.Unmarshal(kv.Value, &p); err != nil {
		return nil, fmt.Errorf("decode progress record %s: %w", kv.Key, err)
	}
	return &p, nil
}
