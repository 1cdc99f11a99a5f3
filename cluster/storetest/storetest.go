// Package storetest is the conformance suite every cluster.Store backend runs, always
// against a real server: CAS semantics, multi-key atomicity, prefix listing, watch
// delivery, leases (revoked, and expired after the holder is killed with SIGKILL),
// racing claims, and consistent reads after the server restarts.
//
// Use it from a backend's tests:
//
//	func TestMain(m *testing.M) { storetest.Main(m) }
//	func TestConformance(t *testing.T) { storetest.Run(t, storetest.Backend{...}) }
//
// Main lets the test binary double as the lease holder that the suite kills.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/drayage/drayage/cluster"
)

// Backend describes the store under test.
type Backend struct {
	// Open returns a new client of the store under test; the suite closes it.
	Open func(t *testing.T) cluster.Store
	// URL is the --store URL a separate process uses to reach the same store.
	URL string
	// LeaseTTL is the TTL the suite asks for (backends may raise it to their minimum).
	LeaseTTL time.Duration
	// ExpiryBound is how long after its holder dies a lease may take to expire (etcd:
	// the TTL; Consul: up to twice the TTL), plus slack.
	ExpiryBound time.Duration
	// Restart stops the server and starts it again over the same data: a moment with no
	// leader. Required.
	Restart func(t *testing.T)
}

const helperEnv = "DRAYAGE_STORETEST_LEASE_HOLDER"

// Main runs the tests, or, when the suite started this process as a lease holder, holds
// a lease until killed. A run whose tests pass fails if they left a goroutine running
// (but those that ignore describes).
func Main(m *testing.M, ignore ...goleak.Option) {
	if spec := os.Getenv(helperEnv); spec != "" {
		holdLease(spec)
		return
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(ignore...); err != nil {
			fmt.Fprintf(os.Stderr, "goroutines left running after the tests: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// Run runs the suite.
func Run(t *testing.T, b Backend) {
	require.NotNil(t, b.Open, "Backend.Open")
	require.NotNil(t, b.Restart, "Backend.Restart: the leader-less test needs it")
	if b.LeaseTTL == 0 {
		b.LeaseTTL = 2 * time.Second
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, b Backend, s cluster.Store, prefix string)
	}{
		{"GetMissingKeyIsNotFound", testGetMissing},
		{"CompareAndSwapOnRevision", testCAS},
		{"TxnIsAllOrNothing", testTxnAtomic},
		{"ListByPrefixIsSortedAndExact", testList},
		{"ScanPagesThroughAPrefixAsListReadsIt", testScan},
		{"WatchDeliversChangesInOrder", testWatch},
		{"WatchFromRevisionReplaysLaterChanges", testWatchFromRev},
		{"ClosedLeaseDeletesItsKeys", testLeaseClose},
		{"LeaseExpiresAfterHolderIsKilled", testLeaseExpiry},
		{"SixteenRacersOneWinner", testRace},
		{"ReadsAfterRestartAreConsistent", testRestart},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := b.Open(t)
			t.Cleanup(func() { _ = s.Close() })
			prefix := fmt.Sprintf("storetest/%s-%d/", tc.name, time.Now().UnixNano())
			tc.fn(t, b, s, prefix)
		})
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func testGetMissing(t *testing.T, _ Backend, s cluster.Store, p string) {
	_, err := s.Get(ctxT(t), p+"missing")
	require.ErrorIs(t, err, cluster.ErrNotFound)
}

func testCAS(t *testing.T, _ Backend, s cluster.Store, p string) {
	ctx := ctxT(t)
	k := p + "k"
	rev1, err := s.Txn(ctx, []cluster.Cond{cluster.Absent(k)}, []cluster.Op{cluster.Put(k, []byte("v1"))})
	require.NoError(t, err)
	require.Positive(t, rev1)

	_, err = s.Txn(ctx, []cluster.Cond{cluster.Absent(k)}, []cluster.Op{cluster.Put(k, []byte("again"))})
	require.ErrorIs(t, err, cluster.ErrConflict, "create of an existing key")

	kv, err := s.Get(ctx, k)
	require.NoError(t, err)
	assert.Equal(t, "v1", string(kv.Value))
	assert.Equal(t, rev1, kv.Rev)

	rev2, err := s.Txn(ctx, []cluster.Cond{cluster.Unchanged(kv)}, []cluster.Op{cluster.Put(k, []byte("v2"))})
	require.NoError(t, err)
	assert.Greater(t, rev2, rev1)

	_, err = s.Txn(ctx, []cluster.Cond{cluster.Unchanged(kv)}, []cluster.Op{cluster.Put(k, []byte("stale"))})
	require.ErrorIs(t, err, cluster.ErrConflict, "write at a stale revision")
	_, err = s.Txn(ctx, []cluster.Cond{cluster.Unchanged(kv)}, []cluster.Op{cluster.Delete(k)})
	require.ErrorIs(t, err, cluster.ErrConflict, "delete at a stale revision")

	kv, err = s.Get(ctx, k)
	require.NoError(t, err)
	assert.Equal(t, "v2", string(kv.Value))
	_, err = s.Txn(ctx, []cluster.Cond{cluster.Unchanged(kv)}, []cluster.Op{cluster.Delete(k)})
	require.NoError(t, err)
	_, err = s.Get(ctx, k)
	require.ErrorIs(t, err, cluster.ErrNotFound)
}

func testTxnAtomic(t *testing.T, _ Backend, s cluster.Store, p string) {
	ctx := ctxT(t)
	a, b := p+"a", p+"b"
	_, err := s.Txn(ctx, nil, []cluster.Op{cluster.Put(a, []byte("1")), cluster.Put(b, []byte("1"))})
	require.NoError(t, err)
	kvA, err := s.Get(ctx, a)
	require.NoError(t, err)
	kvB, err := s.Get(ctx, b)
	require.NoError(t, err)
	assert.Equal(t, kvA.Rev, kvB.Rev, "one transaction, one revision")

	// b changes behind our back: a transaction conditioned on both must change neither.
	_, err = s.Txn(ctx, nil, []cluster.Op{cluster.Put(b, []byte("2"))})
	require.NoError(t, err)
	_, err = s.Txn(ctx, []cluster.Cond{cluster.Unchanged(kvA), cluster.Unchanged(kvB)},
		[]cluster.Op{cluster.Put(a, []byte("x")), cluster.Delete(b)})
	require.ErrorIs(t, err, cluster.ErrConflict)
	got, err := s.Get(ctx, a)
	require.NoError(t, err)
	assert.Equal(t, "1", string(got.Value))
	got, err = s.Get(ctx, b)
	require.NoError(t, err)
	assert.Equal(t, "2", string(got.Value))
}

func testList(t *testing.T, _ Backend, s cluster.Store, p string) {
	ctx := ctxT(t)
	for _, k := range []string{"dir/c", "dir/a", "dir/b", "dirx", "other/a"} {
		_, err := s.Txn(ctx, nil, []cluster.Op{cluster.Put(p+k, []byte(k))})
		require.NoError(t, err)
	}
	kvs, err := s.List(ctx, p+"dir/")
	require.NoError(t, err)
	keys := make([]string, 0, len(kvs))
	for _, kv := range kvs {
		keys = append(keys, strings.TrimPrefix(kv.Key, p))
		assert.Equal(t, strings.TrimPrefix(kv.Key, p), string(kv.Value))
		assert.Positive(t, kv.Rev)
	}
	assert.Equal(t, []string{"dir/a", "dir/b", "dir/c"}, keys)
	kvs, err = s.List(ctx, p+"nothing/")
	require.NoError(t, err)
	assert.Empty(t, kvs)
}

func testScan(t *testing.T, _ Backend, s cluster.Store, p string) {
	ctx := ctxT(t)
	n := cluster.ScanPage*2 + 7 // three pages, the last one short
	ops := make([]cluster.Op, 0, 64)
	for i := range n {
		ops = append(ops, cluster.Put(fmt.Sprintf("%sdir/%05d", p, i), []byte(strconv.Itoa(i))))
		if len(ops) == cap(ops) || i == n-1 { // Consul takes 64 operations per transaction
			_, err := s.Txn(ctx, nil, ops)
			require.NoError(t, err)
			ops = ops[:0]
		}
	}
	_, err := s.Txn(ctx, nil, []cluster.Op{cluster.Put(p+"dirx", []byte("beside")), cluster.Put(p+"dir", []byte("above"))})
	require.NoError(t, err)
	want, err := s.List(ctx, p+"dir/")
	require.NoError(t, err)
	require.Len(t, want, n)
	var got []cluster.KV
	require.NoError(t, s.Scan(ctx, p+"dir/", func(kv cluster.KV) error { got = append(got, kv); return nil }))
	assert.Equal(t, want, got, "every key under the prefix, once, in order, with its value and revision")

	stop := errors.New("enough")
	seen := 0
	err = s.Scan(ctx, p+"dir/", func(cluster.KV) error {
		if seen++; seen == 3 {
			return stop
		}
		return nil
	})
	require.ErrorIs(t, err, stop)
	assert.Equal(t, 3, seen, "an error from fn ends the scan")
	require.NoError(t, s.Scan(ctx, p+"nothing/", func(kv cluster.KV) error { return fmt.Errorf("no key, yet %s", kv.Key) }))
}

// collect reads n events or fails.
func collect(t *testing.T, ch <-chan cluster.Event, n int) []cluster.Event {
	t.Helper()
	var got []cluster.Event
	timeout := time.After(30 * time.Second)
	for len(got) < n {
		select {
		case e, ok := <-ch:
			require.True(t, ok, "watch closed after %d of %d events", len(got), n)
			got = append(got, e)
		case <-timeout:
			t.Fatalf("watch delivered %d of %d events in 30s: %+v", len(got), n, got)
		}
	}
	return got
}

func testWatch(t *testing.T, _ Backend, s cluster.Store, p string) {
	ctx, cancel := context.WithCancel(ctxT(t))
	ch, err := s.Watch(ctx, p, 0)
	require.NoError(t, err)
	k := p + "w"
	r1, err := s.Txn(ctx, nil, []cluster.Op{cluster.Put(k, []byte("1"))})
	require.NoError(t, err)
	got := collect(t, ch, 1)
	r2, err := s.Txn(ctx, nil, []cluster.Op{cluster.Put(k, []byte("2"))})
	require.NoError(t, err)
	got = append(got, collect(t, ch, 1)...)
	_, err = s.Txn(ctx, nil, []cluster.Op{cluster.Delete(k)})
	require.NoError(t, err)
	got = append(got, collect(t, ch, 1)...)

	assert.Equal(t, cluster.Event{Key: k, Value: []byte("1"), Rev: r1}, got[0])
	assert.Equal(t, cluster.Event{Key: k, Value: []byte("2"), Rev: r2}, got[1])
	assert.True(t, got[2].Deleted)
	assert.Equal(t, k, got[2].Key)
	assert.Greater(t, got[2].Rev, r2)

	_, err = s.Txn(ctx, nil, []cluster.Op{cluster.Put(p+"../outside", []byte("x"))})
	require.NoError(t, err)
	cancel()
	for e := range ch { // drains and ends: the channel closes when ctx ends
		assert.True(t, strings.HasPrefix(e.Key, p), "event outside the prefix: %s", e.Key)
	}
}

func testWatchFromRev(t *testing.T, _ Backend, s cluster.Store, p string) {
	ctx := ctxT(t)
	r1, err := s.Txn(ctx, nil, []cluster.Op{cluster.Put(p+"a", []byte("1"))})
	require.NoError(t, err)
	r2, err := s.Txn(ctx, nil, []cluster.Op{cluster.Put(p+"b", []byte("2"))})
	require.NoError(t, err)
	ch, err := s.Watch(ctx, p, r1)
	require.NoError(t, err)
	got := collect(t, ch, 1)
	assert.Equal(t, cluster.Event{Key: p + "b", Value: []byte("2"), Rev: r2}, got[0], "only what came after r1")
}

func testRace(t *testing.T, b Backend, s cluster.Store, p string) {
	ctx := ctxT(t)
	k := p + "contested"
	var wins, conflicts atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each racer is a node of its own: its own client and lease.
			c := b.Open(t)
			defer c.Close()
			lease, err := c.Grant(ctx, b.LeaseTTL)
			if !assert.NoError(t, err) {
				return
			}
			defer lease.Close(context.Background())
			<-start
			_, err = c.Txn(ctx, []cluster.Cond{cluster.Absent(k)}, []cluster.Op{cluster.PutLeased(k, []byte(strconv.Itoa(i)), lease)})
			switch {
			case err == nil:
				wins.Add(1)
			case errors.Is(err, cluster.ErrConflict):
				conflicts.Add(1)
			default:
				t.Errorf("racer %d: %v", i, err)
			}
			// Hold until everyone has tried.
			time.Sleep(500 * time.Millisecond)
		}()
	}
	time.Sleep(200 * time.Millisecond)
	close(start)
	wg.Wait()
	assert.Equal(t, int32(1), wins.Load(), "exactly one racer wins")
	assert.Equal(t, int32(15), conflicts.Load(), "every other racer sees a conflict")
}

func testRestart(t *testing.T, b Backend, s cluster.Store, p string) {
	ctx := ctxT(t)
	k := p + "durable"
	rev, err := s.Txn(ctx, []cluster.Cond{cluster.Absent(k)}, []cluster.Op{cluster.Put(k, []byte("before"))})
	require.NoError(t, err)

	b.Restart(t)

	// The same client, after a moment with no leader: reads see the last committed write,
	// at the same revision, and CAS on that revision still works.
	kv, err := s.Get(ctx, k)
	require.NoError(t, err)
	assert.Equal(t, "before", string(kv.Value))
	assert.Equal(t, rev, kv.Rev)
	_, err = s.Txn(ctx, []cluster.Cond{{Key: k, Rev: rev}}, []cluster.Op{cluster.Put(k, []byte("after"))})
	require.NoError(t, err)
	kv, err = s.Get(ctx, k)
	require.NoError(t, err)
	assert.Equal(t, "after", string(kv.Value))
}
