package metrics

import (
	"context"
	"errors"
	"time"

	"github.com/drayage/drayage/cluster"
)

// Store wraps a cluster store and counts its calls in drayage_store_calls_total and
// the failed ones in drayage_store_errors_total.
// A missing key (cluster.ErrNotFound) and a failed condition (cluster.ErrConflict) are
// answers, not errors, and a call whose context ended was stopped by its caller: none of
// them is counted. With a nil *Metrics it returns s itself.
func (m *Metrics) Store(s cluster.Store) cluster.Store {
	if m == nil {
		return s
	}
	return &countingStore{Store: s, m: m}
}

type countingStore struct {
	cluster.Store
	m *Metrics
}

var _ cluster.Store = (*countingStore)(nil)

func (s *countingStore) count(ctx context.Context, op string, err error) {
	s.m.StoreCall(op)
	if err == nil || errors.Is(err, cluster.ErrNotFound) || errors.Is(err, cluster.ErrConflict) || ctx.Err() != nil {
		return
	}
	s.m.StoreError(op)
}

func (s *countingStore) Get(ctx context.Context, key string) (cluster.KV, error) {
	kv, err := s.Store.Get(ctx, key)
	s.count(ctx, OpGet, err)
	return kv, err
}

func (s *countingStore) List(ctx context.Context, prefix string) ([]cluster.KV, error) {
	kvs, err := s.Store.List(ctx, prefix)
	s.count(ctx, OpList, err)
	return kvs, err
}

// Scan counts as one list call, however many pages it reads.
func (s *countingStore) Scan(ctx context.Context, prefix string, fn func(cluster.KV) error) error {
	err := s.Store.Scan(ctx, prefix, fn)
	s.count(ctx, OpList, err)
	return err
}

func (s *countingStore) Txn(ctx context.Context, conds []cluster.Cond, ops []cluster.Op) (int64, error) {
	rev, err := s.Store.Txn(ctx, conds, ops)
	s.count(ctx, OpTxn, err)
	return rev, err
}

func (s *countingStore) Watch(ctx context.Context, prefix string, afterRev int64) (<-chan cluster.Event, error) {
	ch, err := s.Store.Watch(ctx, prefix, afterRev)
	s.count(ctx, OpWatch, err)
	return ch, err
}

func (s *countingStore) Grant(ctx context.Context, ttl time.Duration) (cluster.Lease, error) {
	l, err := s.Store.Grant(ctx, ttl)
	s.count(ctx, OpGrant, err)
	return l, err
}
