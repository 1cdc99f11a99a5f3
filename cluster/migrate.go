package cluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Raising the records' version. A release that changes the records (a new kind of
// record, a field read differently) raises protocol.Newest and adds a Migration to the
// version it brings. Once every node speaks that version (the daemon decides when), one
// node raises the store to it: it takes PREFIX/schema-raise on its lease, runs the
// steps of each version between the store's and the new one, and writes the new version
// and drops the key in one transaction conditioned on both. Every write a step makes is
// conditioned on the key as the raising node wrote it (fencedStore): a node whose lease
// ended mid-way writes nothing more, and the next node runs the steps again, so a step
// must be safe to run twice. Once the version is written, no node runs them again.

// Migration brings the records to version To.
type Migration struct {
	To int
	// What says what the step changes, for logs and errors.
	What string
	// Run changes the records under prefix. Each transaction it makes through s is
	// conditioned on the raising node still holding the raise; run twice, it must leave
	// what one run leaves.
	Run func(ctx context.Context, s Store, prefix string) error
}

// migrations are this release's steps, by version. Version 1's records are the first,
// and no release has changed them yet.
var migrations []Migration

// Migrations returns this release's steps, for RaiseSchema.
func Migrations() []Migration { return slices.Clone(migrations) }

// ErrRaising means another node is raising the records' version now.
var ErrRaising = errors.New("another node is raising the version of the cluster store's records")

// raiseHold is the record of the node raising the version, attached to its lease.
type raiseHold struct {
	Node  string    `json:"node"`
	From  int       `json:"from"`
	To    int       `json:"to"`
	Since time.Time `json:"since"`
}

func (r *Registry) raiseKey() string { return r.prefix + "schema-raise" }

// RaiseSchema raises the store's records to version to on node's behalf, running the
// steps of each version between, and returns the version the store is at afterwards and
// whether node raised it. A store already at to or newer is left as it is. It returns
// ErrRaising if another node holds the raise, and ErrClaimLost if node's lease ended
// before the version was written (the next attempt, by any node, runs the steps again).
func (r *Registry) RaiseSchema(ctx context.Context, node string, to int, lease Lease, steps []Migration) (Schema, bool, error) {
	s, err := r.Schema(ctx)
	if err != nil || s.Version >= to {
		return s, false, err
	}
	hold := raiseHold{Node: node, From: s.Version, To: to, Since: time.Now().UTC()}
	rev, err := r.store.Txn(ctx, []Cond{Absent(r.raiseKey())}, []Op{PutLeased(r.raiseKey(), encode(hold), lease)})
	if errors.Is(err, ErrConflict) {
		if h, _, rerr := read[raiseHold](ctx, r.store, r.raiseKey(), "raise of the records' version"); rerr == nil {
			return s, false, fmt.Errorf("node %q raises the records from version %d to %d since %s: %w",
				h.Node, h.From, h.To, h.Since.Format(time.RFC3339), ErrRaising)
		}
		return s, false, ErrRaising
	}
	if err != nil {
		return s, false, fmt.Errorf("node %q: take the raise of the records' version: %w", node, err)
	}
	held := Cond{Key: r.raiseKey(), Rev: rev}
	release := func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_, _ = r.store.Txn(rctx, []Cond{held}, []Op{Delete(r.raiseKey())})
	}

	// Read again under the hold: a node that held it before may have finished meanwhile.
	if s, err = r.Schema(ctx); err != nil || s.Version >= to {
		release()
		return s, false, err
	}
	fenced := fencedStore{Store: r.store, held: held}
	steps = slices.Clone(steps)
	slices.SortFunc(steps, func(a, b Migration) int { return cmp.Compare(a.To, b.To) })
	for _, m := range steps {
		if m.To <= s.Version || m.To > to {
			continue
		}
		if err := m.Run(ctx, fenced, r.prefix); err != nil {
			release()
			return s, false, fmt.Errorf("node %q: raise the records from version %d to %d: %s: %w", node, s.Version, to, m.What, fenced.lost(ctx, err))
		}
	}
	next := Schema{Version: to, By: node, At: time.Now().UTC(), Unknown: s.Unknown}
	rev, err = r.store.Txn(ctx, []Cond{held, {Key: r.schemaKey(), Rev: s.rev}}, []Op{Put(r.schemaKey(), encode(next)), Delete(r.raiseKey())})
	if err != nil {
		release()
		return s, false, fmt.Errorf("node %q: write version %d of the records: %w", node, to, fenced.lost(ctx, err))
	}
	next.rev = rev
	return next, true, nil
}

// fencedStore is a Store whose transactions hold only while the raise is held as the
// raising node took it.
type fencedStore struct {
	Store
	held Cond
}

func (f fencedStore) Txn(ctx context.Context, conds []Cond, ops []Op) (int64, error) {
	return f.Store.Txn(ctx, append(slices.Clip(conds), f.held), ops)
}

// lost tells a conflict on the raise for what it is: the raising node's lease ended, and
// another node may hold the raise now.
func (f fencedStore) lost(ctx context.Context, err error) error {
	if !errors.Is(err, ErrConflict) && !errors.Is(err, ErrLeaseLost) {
		return err
	}
	gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	kv, gerr := f.Get(gctx, f.held.Key)
	if errors.Is(gerr, ErrNotFound) || (gerr == nil && kv.Rev != f.held.Rev) {
		return fmt.Errorf("the raise was no longer this node's (its lease ended): %w", ErrClaimLost)
	}
	return err
}
