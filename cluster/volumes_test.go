package cluster_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/cluster"
)

// newRegistry gives each test a fresh prefix in an embedded etcd server of its own.

func TestCreateOfAnExistingNameReturnsTheSameVolume(t *testing.T) {
	ctx := context.Background()
	r, _ := newRegistry(t)
	v := create(t, r, "db", "node-a")
	assert.Equal(t, uint64(1), v.Epoch)

	e, created, err := r.Create(ctx, cluster.Volume{Name: "db", Owner: "node-b", Options: map[string]string{"uid": "1"}})
	require.NoError(t, err)
	assert.False(t, created)
	assert.Equal(t, "node-a", e.Volume.Owner, "the second node gets the existing volume, not a duplicate")
	assert.Empty(t, e.Volume.Options)

	list, err := r.List(ctx)
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.Equal(t, cluster.StateIdle, list[0].State())
}

func TestRemovalIsMarkedThenFinished(t *testing.T) {
	ctx := context.Background()
	r, s := newRegistry(t)
	create(t, r, "db", "node-a")
	mc, err := r.ClaimMount(ctx, "db", "node-a", lease(t, s), 2)
	require.NoError(t, err)
	_, err = r.MarkRemoving(ctx, "db", cluster.RemoveOptions{By: "node-b"})
	require.ErrorIs(t, err, cluster.ErrInUse)
	assert.Contains(t, err.Error(), "by 2 container(s)")
	require.NoError(t, r.Release(ctx, mc))

	v, err := r.MarkRemoving(ctx, "db", cluster.RemoveOptions{By: "node-b"})
	require.NoError(t, err)
	e, err := r.Get(ctx, "db")
	require.NoError(t, err)
	assert.Equal(t, cluster.StateRemoving, e.State())
	_, err = r.ClaimMount(ctx, "db", "node-a", lease(t, s), 1)
	require.ErrorIs(t, err, cluster.ErrRemoving)

	require.NoError(t, r.FinishRemoval(ctx, v))
	_, err = r.Get(ctx, "db")
	require.ErrorIs(t, err, cluster.ErrVolumeNotFound)
}

func TestReclaimRewritesARecordOlderThanTheCopyButNeverLowersTheEpoch(t *testing.T) {
	ctx := context.Background()
	r, _ := newRegistry(t)
	v := create(t, r, "db", "node-a")
	_, err := r.Reclaim(ctx, v, "node-b", 0, "")
	require.ErrorIs(t, err, cluster.ErrStaleEpoch)
	nv, err := r.Reclaim(ctx, v, "node-b", 7, "abc")
	require.NoError(t, err)
	assert.Equal(t, "node-b", nv.Owner)
	assert.Equal(t, uint64(7), nv.Epoch)
	_, err = r.Reclaim(ctx, v, "node-c", 9, "")
	require.ErrorIs(t, err, cluster.ErrConflict, "the record changed since it was read")
}

// breakingStore is a real store whose first watch the store "breaks off" after one
// event, as a leader change or an outage does.
type breakingStore struct {
	cluster.Store
	broken bool
}

func (s *breakingStore) Watch(ctx context.Context, prefix string, afterRev int64) (<-chan cluster.Event, error) {
	ch, err := s.Store.Watch(ctx, prefix, afterRev)
	if err != nil || s.broken {
		return ch, err
	}
	s.broken = true
	out := make(chan cluster.Event, 1)
	out <- <-ch
	close(out)
	return out, nil
}

func TestWatchVolumesReportsEveryChangeInOrderAndResumesAfterABreak(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, s := newRegistry(t)
	r := cluster.NewRegistry(&breakingStore{Store: s}, "test/")
	changes := r.WatchVolumes(ctx)
	time.Sleep(100 * time.Millisecond) // the watch is on before the first change

	create(t, r, "a", "node-a") // seen, then the watch breaks
	create(t, r, "b", "node-a") // made while no watch runs
	v, err := r.MarkRemoving(ctx, "a", cluster.RemoveOptions{By: "node-a"})
	require.NoError(t, err)
	require.NoError(t, r.FinishRemoval(ctx, v))

	var got []cluster.VolumeChange
	for len(got) < 4 {
		select {
		case c := <-changes:
			got = append(got, c)
		case <-time.After(10 * time.Second):
			t.Fatalf("saw %d of 4 changes: %+v", len(got), got)
		}
	}
	names := []string{got[0].Name, got[1].Name, got[2].Name, got[3].Name}
	assert.Equal(t, []string{"a", "b", "a", "a"}, names, "every change once, in order, the one made during the break included")
	assert.True(t, got[3].Deleted)
	assert.False(t, got[2].Deleted)
	for i := 1; i < len(got); i++ {
		assert.Greater(t, got[i].Rev, got[i-1].Rev)
	}
	cancel()
	for range changes { // closed once ctx ends
	}
}
