package metrics

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/daemon/metrics/metricstest"
)

// failingStore answers every call with err.
type failingStore struct {
	cluster.Store
	err error
}

func (s failingStore) Get(context.Context, string) (cluster.KV, error)    { return cluster.KV{}, s.err }
func (s failingStore) List(context.Context, string) ([]cluster.KV, error) { return nil, s.err }
func (s failingStore) Txn(context.Context, []cluster.Cond, []cluster.Op) (int64, error) {
	return 0, s.err
}
func (s failingStore) Watch(context.Context, string, int64) (<-chan cluster.Event, error) {
	return nil, s.err
}
func (s failingStore) Scan(context.Context, string, func(cluster.KV) error) error  { return s.err }
func (s failingStore) Grant(context.Context, time.Duration) (cluster.Lease, error) { return nil, s.err }

func serve(t *testing.T, m *Metrics) func() metricstest.Scrape {
	srv := httptest.NewServer(m.Handler())
	t.Cleanup(srv.Close)
	return func() metricstest.Scrape { return metricstest.Get(t, srv.URL) }
}

func TestStoreCallsAreCountedAndErrorsButNotAnswers(t *testing.T) {
	m := New(Options{})
	scrape := serve(t, m)
	ctx := context.Background()
	call := func(s cluster.Store, ctx context.Context) {
		_, _ = s.Get(ctx, "k")
		_, _ = s.List(ctx, "p")
		_, _ = s.Txn(ctx, nil, nil)
		_, _ = s.Watch(ctx, "p", 0)
		_, _ = s.Grant(ctx, time.Second)
	}
	call(m.Store(failingStore{err: errors.New("connection refused")}), ctx)
	call(m.Store(failingStore{err: errors.New("connection refused")}), ctx)
	s := scrape()
	for _, op := range []string{"get", "list", "txn", "watch", "grant"} {
		assert.Equal(t, 2.0, s.Value("drayage_store_errors_total", "op", op), op)
	}

	call(m.Store(failingStore{err: cluster.ErrNotFound}), ctx)
	call(m.Store(failingStore{err: cluster.ErrConflict}), ctx)
	call(m.Store(failingStore{}), ctx)
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	call(m.Store(failingStore{err: context.Canceled}), canceled)
	s = scrape()
	assert.Equal(t, 10.0, s.Total("drayage_store_errors_total"), "a missing key, a lost condition, success and the caller's cancel are not errors")
	for _, op := range []string{"get", "list", "txn", "watch", "grant"} {
		assert.Equal(t, 6.0, s.Value("drayage_store_calls_total", "op", op), "every call is a call: %s", op)
	}

	var none *Metrics
	inner := failingStore{}
	assert.Equal(t, cluster.Store(inner), none.Store(inner), "no metrics: the store itself")
}

func TestAnUnknownFailureReasonIsOther(t *testing.T) {
	m := New(Options{})
	scrape := serve(t, m)
	m.Started(RoleSend).Failed("disk on fire")
	m.Started(RoleSend).Failed(ReasonCorrupt)
	s := scrape()
	assert.Equal(t, 1.0, s.Value("drayage_transfers_failed_total", "role", "send", "reason", "other"))
	assert.Equal(t, 1.0, s.Value("drayage_transfers_failed_total", "role", "send", "reason", "corrupt"))
	assert.False(t, s.Has("drayage_transfers_failed_total", "reason", "disk on fire"))
}

func TestScrapeTimeGaugesReportEveryKnownState(t *testing.T) {
	m := New(Options{})
	scrape := serve(t, m)
	s := scrape()
	assert.False(t, s.Has("drayage_volumes"), "nothing to count yet")
	assert.False(t, s.Has("drayage_cluster_members"))

	m.SetVolumeStates(func(context.Context) map[string]int { return map[string]int{"mounted": 2} })
	m.SetMembers(func() map[string]int { return map[string]int{"alive": 3, "dead": 1} }, func() int { return 2 })
	s = scrape()
	assert.Equal(t, 2.0, s.Value("drayage_volumes", "state", "mounted"))
	assert.True(t, s.Has("drayage_volumes", "state", "pulling"), "known states are reported at 0")
	assert.Equal(t, 3.0, s.Value("drayage_cluster_members", "state", "alive"))
	assert.Equal(t, 1.0, s.Value("drayage_cluster_members", "state", "dead"))
	assert.True(t, s.Has("drayage_cluster_members", "state", "left"))
	assert.Equal(t, 2.0, s.Value("drayage_gossip_health_score"))
}

func TestANilMetricsRecordsNothingAndServesNothing(t *testing.T) {
	var m *Metrics
	m.Started(RoleReceive).Completed()
	m.Flow(Received).Bytes(10)
	m.Flow(Received).File()
	m.Mount(time.Second, MountOK)
	m.StoreError(OpGet)
	m.GossipError()
	m.SetVolumeStates(nil)
	m.SetMembers(nil, nil)
	assert.Nil(t, m.Registry())
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	require.Equal(t, 404, rec.Code)
}
