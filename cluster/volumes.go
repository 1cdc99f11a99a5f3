package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// States of a volume, derived from its claim.
const (
	StateIdle      = "idle"
	StateMounted   = "mounted"
	StateMigrating = "migrating"
	StateCopying   = "copying"
	StateFilling   = "filling"
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
	// Unknown keeps the fields a later release wrote.
	Unknown `json:"-"`
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
	case e.Claim.Kind == ClaimSeed:
		return StateFilling
	default:
		return StateMounted
	}
}

// Get reads a volume and its claim.
func (r *Registry) Get(ctx context.Context, name string) (Entry, error) {
	v, rev, err := read[Volume](ctx, r.store, r.volumeKey(name), "volume record")
	if errors.Is(err, ErrNotFound) {
		return Entry{}, fmt.Errorf("volume %q: %w", name, ErrVolumeNotFound)
	}
	if err != nil {
		return Entry{}, err
	}
	v.Rev = rev
	e := Entry{Volume: *v}
	c, rev, err := read[Claim](ctx, r.store, r.claimKey(name), "claim")
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return Entry{}, err
	default:
		c.Rev = rev
		e.Claim = c
	}
	return e, nil
}

// List reads every volume with its claim and mark, sorted by name. The records are read
// a page at a time and decoded as they come.
func (r *Registry) List(ctx context.Context) ([]Entry, error) {
	claimKVs, err := r.store.List(ctx, r.claimsPrefix())
	if err != nil {
		return nil, err
	}
	marks, _, err := readAll[MountMark](ctx, r.store, r.marksPrefix(), "mount mark")
	if err != nil {
		return nil, err
	}
	claims := make(map[string]*Claim, len(claimKVs))
	for _, kv := range claimKVs {
		c, err := decode[Claim](kv, "claim")
		if err != nil {
			return nil, err
		}
		c.Rev = kv.Rev
		claims[strings.TrimPrefix(kv.Key, r.claimsPrefix())] = c
	}
	var out []Entry
	err = r.store.Scan(ctx, r.volumesPrefix(), func(kv KV) error {
		v, err := decode[Volume](kv, "volume record")
		if err != nil {
			return err
		}
		v.Rev = kv.Rev
		name := strings.TrimPrefix(kv.Key, r.volumesPrefix())
		out = append(out, Entry{Volume: *v, Claim: claims[name], Mark: marks[name]})
		return nil
	})
	return out, err
}

// Names lists the volumes, sorted, but for those being removed: the records are read a
// page at a time (Scan) and looked into only if they may carry a removal mark. With
// 100,000 volumes it costs a fraction of List, which decodes every record, holds them
// all and reads the claims and marks too.
func (r *Registry) Names(ctx context.Context) ([]string, error) {
	var out []string
	err := r.store.Scan(ctx, r.volumesPrefix(), func(kv KV) error {
		if bytes.Contains(kv.Value, []byte(`"removing"`)) {
			var v struct {
				Removing bool `json:"removing"`
			}
			if err := json.Unmarshal(kv.Value, &v); err != nil {
				return fmt.Errorf("decode volume record %s: %w", kv.Key, err)
			}
			if v.Removing {
				return nil
			}
		}
		out = append(out, strings.TrimPrefix(kv.Key, r.volumesPrefix()))
		return nil
	})
	return out, err
}

// Create adds a volume record unless the name exists. It returns the record now in the
// store and whether this call created it.
func (r *Registry) Create(ctx context.Context, v Volume) (Entry, bool, error) {
	if v.Epoch == 0 {
		v.Epoch = 1
	}
	for {
		rev, err := r.store.Txn(ctx, []Cond{Absent(r.volumeKey(v.Name))}, []Op{Put(r.volumeKey(v.Name), encode(v))})
		if err == nil {
			v.Rev = rev
			return Entry{Volume: v}, true, nil
		}
		if !errors.Is(err, ErrConflict) {
			return Entry{}, false, err
		}
		e, err := r.Get(ctx, v.Name)
		if !errors.Is(err, ErrVolumeNotFound) { // else: removed in between, try again
			return e, false, err
		}
	}
}

// UpdateSize records the size the owner measured. The write carries the owner's epoch
// and is refused with ErrStaleEpoch if ownership moved on.
func (r *Registry) UpdateSize(ctx context.Context, name, node string, epoch uint64, size int64) error {
	_, _, err := r.change(ctx, name, func(e Entry) (txn, error) {
		v := e.Volume
		if v.Owner != node || v.Epoch != epoch {
			return txn{}, fmt.Errorf("volume %q: node %q writes at epoch %d, but node %q owns it at epoch %d: %w", name, node, epoch, v.Owner, v.Epoch, ErrStaleEpoch)
		}
		if v.Size == size {
			return txn{}, errUnchanged
		}
		v.Size = size
		return txn{conds: []Cond{Unchanged(KV{Key: r.volumeKey(name), Rev: v.Rev})}, ops: []Op{Put(r.volumeKey(name), encode(v))}}, nil
	}, nil)
	return err
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

// VolumeChange is a change to a volume's record seen by WatchVolumes.
type VolumeChange struct {
	Name string
	// Deleted: the record is gone.
	Deleted bool
	Rev     int64
}

// watchRetry is how long WatchVolumes waits before watching again after the store
// broke a watch off.
const watchRetry = time.Second

// WatchVolumes reports every change to a volume record (created, rewritten, marked for
// removal, deleted) from now on, until ctx ends; then the channel is closed. When the
// store breaks a watch off (a leader change, an outage) it watches again from the last
// change it reported, so a change is missed only if the store compacted it away
// meanwhile: a caller that must see every volume's latest state also lists them now and
// then.
func (r *Registry) WatchVolumes(ctx context.Context) <-chan VolumeChange {
	out := make(chan VolumeChange)
	go func() {
		defer close(out)
		var after int64
		for ctx.Err() == nil {
			events, err := r.store.Watch(ctx, r.volumesPrefix(), after)
			if err == nil {
				for ev := range events {
					after = ev.Rev
					select {
					case out <- VolumeChange{Name: strings.TrimPrefix(ev.Key, r.volumesPrefix()), Deleted: ev.Deleted, Rev: ev.Rev}:
					case <-ctx.Done():
						return
					}
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(watchRetry):
			}
		}
	}()
	return out
}
