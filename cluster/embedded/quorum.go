package embedded

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/drayage/drayage/cluster"
)

// Quorum is whether the store can decide, as this node sees it.
type Quorum struct {
	OK bool `json:"ok"`
	// Leader is the leading member's name (or client address, seen from a client).
	Leader string `json:"leader,omitempty"`
	// Voters are the voting members (names; client addresses, seen from a client).
	Voters []string `json:"voters"`
}

// Quorum asks whether the voting members have a leader: this node's member knows; a
// client asks the voting members it knows, each for at most a second.
func (s *Store) Quorum(ctx context.Context) Quorum {
	if srv := s.server.Load(); srv != nil {
		es := srv.Server
		var q Quorum
		for _, m := range es.Cluster().Members() {
			if m.IsLearner {
				continue
			}
			q.Voters = append(q.Voters, m.Name)
			if m.ID == es.Leader() {
				q.Leader = m.Name
			}
		}
		slices.Sort(q.Voters)
		q.OK = es.Leader() != 0
		return q
	}
	q := Quorum{Voters: s.Client().Endpoints()}
	for _, ep := range q.Voters {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		leader, err := s.status(ctx, ep)
		cancel()
		if err == nil && leader != 0 {
			q.OK, q.Leader = true, ep
			return q
		}
	}
	return q
}

// explain adds to a failure of the store what lies behind it when the store has lost
// its quorum: which voting members there are, and what to do.
func (s *Store) explain(ctx context.Context, err error) error {
	if err == nil || errors.Is(err, cluster.ErrNotFound) || errors.Is(err, cluster.ErrConflict) || errors.Is(err, cluster.ErrLeaseLost) {
		return err
	}
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	q := s.Quorum(qctx)
	if q.OK {
		return err
	}
	need := len(q.Voters)/2 + 1
	return fmt.Errorf("%w: %w: no leader among its %d voting members (%s), as node %q sees them; a majority (%d) must run and reach each other: bring back the nodes that are down or cut off ('drayage store ls' on a node that runs shows which answer). Containers already running keep their volumes; nothing that needs the store can start meanwhile",
		err, cluster.ErrNoQuorum, len(q.Voters), strings.Join(q.Voters, ", "), s.opts.Name, need)
}

// Get implements cluster.Store.
func (s *Store) Get(ctx context.Context, key string) (cluster.KV, error) {
	kv, err := s.Store.Get(ctx, key)
	return kv, s.explain(ctx, err)
}

// List implements cluster.Store.
func (s *Store) List(ctx context.Context, prefix string) ([]cluster.KV, error) {
	kvs, err := s.Store.List(ctx, prefix)
	return kvs, s.explain(ctx, err)
}

// Scan implements cluster.Store. An error of fn's own is returned as it is.
func (s *Store) Scan(ctx context.Context, prefix string, fn func(cluster.KV) error) error {
	var fnFailed bool
	err := s.Store.Scan(ctx, prefix, func(kv cluster.KV) error {
		err := fn(kv)
		fnFailed = err != nil
		return err
	})
	if fnFailed {
		return err
	}
	return s.explain(ctx, err)
}

// Txn implements cluster.Store.
func (s *Store) Txn(ctx context.Context, conds []cluster.Cond, ops []cluster.Op) (int64, error) {
	rev, err := s.Store.Txn(ctx, conds, ops)
	return rev, s.explain(ctx, err)
}

// Grant implements cluster.Store.
func (s *Store) Grant(ctx context.Context, ttl time.Duration) (cluster.Lease, error) {
	l, err := s.Store.Grant(ctx, ttl)
	return l, s.explain(ctx, err)
}
