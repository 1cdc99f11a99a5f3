package volume

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/cluster/clustertest"
)

// tracingStore records the calls made to a cluster store.
type tracingStore struct {
	cluster.Store
	mu    sync.Mutex
	calls []string
}

func (s *tracingStore) add(op, key string) {
	s.mu.Lock()
	s.calls = append(s.calls, op+" "+key)
	s.mu.Unlock()
}

// during returns the calls f made.
func (s *tracingStore) during(f func()) []string {
	s.mu.Lock()
	n := len(s.calls)
	s.mu.Unlock()
	f()
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.calls[n:]...)
}

func (s *tracingStore) Get(ctx context.Context, key string) (cluster.KV, error) {
	s.add("get", key)
	return s.Store.Get(ctx, key)
}

func (s *tracingStore) List(ctx context.Context, prefix string) ([]cluster.KV, error) {
	s.add("list", prefix)
	return s.Store.List(ctx, prefix)
}

func (s *tracingStore) Txn(ctx context.Context, conds []cluster.Cond, ops []cluster.Op) (int64, error) {
	keys := make([]string, 0, len(ops))
	for _, op := range ops {
		keys = append(keys, op.Key)
	}
	s.add("txn", strings.Join(keys, ","))
	return s.Store.Txn(ctx, conds, ops)
}

func (s *tracingStore) Watch(ctx context.Context, prefix string, afterRev int64) (<-chan cluster.Event, error) {
	s.add("watch", prefix)
	return s.Store.Watch(ctx, prefix, afterRev)
}

func (s *tracingStore) Grant(ctx context.Context, ttl time.Duration) (cluster.Lease, error) {
	s.add("grant", "")
	return s.Store.Grant(ctx, ttl)
}

// A Mount of a volume held here is one round trip to the store for its claim, a few
// more to read what it decides from: never a walk of the volumes (make scale prints the
// counts; DESIGN's goal is at most 4).
func TestALocalMountCostsAtMostFourStoreCalls(t *testing.T) {
	ctx := context.Background()
	store := &tracingStore{Store: clustertest.Store(t)}
	f := newFixture(t)
	f.reg = cluster.NewRegistry(store, clustertest.Registry(t).Prefix())
	m := f.start(t)
	require.NoError(t, m.Create(ctx, "v1", nil))

	first := store.during(func() { _, err := m.Mount(ctx, "v1", "c1"); require.NoError(t, err) })
	again := store.during(func() { _, err := m.Mount(ctx, "v1", "c2"); require.NoError(t, err) })
	require.LessOrEqual(t, len(first), 4, "an idle volume's Mount: %v", first)
	require.LessOrEqual(t, len(again), 4, "a mounted volume's Mount: %v", again)
}

// listlessStore is a store whose prefix reads fail once broken: one that can't be
// reached, for the reads that list.
type listlessStore struct {
	cluster.Store
	broken bool
}

var errUnreachable = errors.New("connection refused")

func (s *listlessStore) List(ctx context.Context, prefix string) ([]cluster.KV, error) {
	if s.broken {
		return nil, errUnreachable
	}
	return s.Store.List(ctx, prefix)
}

func (s *listlessStore) Scan(ctx context.Context, prefix string, fn func(cluster.KV) error) error {
	if s.broken {
		return errUnreachable
	}
	return s.Store.Scan(ctx, prefix, fn)
}

// With the store out of reach, the engine's List still names the volumes this node has,
// with the mountpoints of those mounted: the engine forgets what List omits.
func TestListNamesWithoutTheStoreNamesTheVolumesHeldHere(t *testing.T) {
	ctx := context.Background()
	store := &listlessStore{Store: clustertest.Store(t)}
	f := newFixture(t)
	f.reg = cluster.NewRegistry(store, clustertest.Registry(t).Prefix())
	m := f.start(t)
	require.NoError(t, m.Create(ctx, "v1", nil))
	require.NoError(t, m.Create(ctx, "v2", nil))
	mp, err := m.Mount(ctx, "v1", "c1")
	require.NoError(t, err)

	store.broken = true
	names, err := m.ListNames(ctx)
	require.NoError(t, err)
	require.Equal(t, []Info{{Name: "v1", Mountpoint: mp}, {Name: "v2"}}, names)
}
