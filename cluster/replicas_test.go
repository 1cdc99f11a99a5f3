package cluster_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/cluster"
)

func TestAReplicaIsRecordedOnlyAtTheOwnersEpochAndGoesWithItsVolume(t *testing.T) {
	ctx := context.Background()
	r, s := newRegistry(t)
	create(t, r, "db", "node-a")
	now := time.Now().UTC()
	rp := cluster.Replica{Volume: "db", Node: "node-b", Epoch: 1, Started: now, Synced: now, Root: "ab", Bytes: 10}
	require.NoError(t, r.PutReplica(ctx, rp))

	stale := rp
	stale.Epoch = 0
	require.ErrorIs(t, r.PutReplica(ctx, stale), cluster.ErrStaleEpoch, "a sync from an earlier owner is not recorded")
	self := rp
	self.Node = "node-a"
	require.ErrorIs(t, r.PutReplica(ctx, self), cluster.ErrStaleEpoch, "the owner is not its own replica")

	got, err := r.Replicas(ctx, "db")
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.Equal(t, "node-b", got[0].Node)
	all, err := r.AllReplicas(ctx)
	require.NoError(t, err)
	assert.Len(t, all["db"], 1)

	// A move to the replica's node makes it the owner: its replica record goes.
	claim, _, err := r.BeginMigration(ctx, "db", "node-b", lease(t, s))
	require.NoError(t, err)
	_, mc, err := r.CommitMigration(ctx, claim, 10, "ab", lease(t, s), 0)
	require.NoError(t, err)
	got, err = r.Replicas(ctx, "db")
	require.NoError(t, err)
	assert.Empty(t, got)
	require.NoError(t, r.Release(ctx, mc))

	rp.Node, rp.Epoch = "node-a", 2
	require.NoError(t, r.PutReplica(ctx, rp))
	v, err := r.MarkRemoving(ctx, "db", cluster.RemoveOptions{By: "node-b"})
	require.NoError(t, err)
	require.ErrorIs(t, r.PutReplica(ctx, rp), cluster.ErrRemoving)
	require.NoError(t, r.FinishRemoval(ctx, v))
	all, err = r.AllReplicas(ctx)
	require.NoError(t, err)
	assert.Empty(t, all, "a removed volume's replica records go with it")
}

func TestAReplicasLagIsNothingOnlyForACleanCopyOfTheCurrentEpoch(t *testing.T) {
	now := time.Now()
	v := cluster.Volume{Name: "db", Owner: "node-a", Epoch: 3}
	rp := cluster.Replica{Epoch: 3, Started: now.Add(-time.Minute), Clean: true}
	assert.Zero(t, rp.Lag(v, false, now))
	assert.Equal(t, time.Minute, rp.Lag(v, true, now), "mounted again: changes since may be missing")
	rp.Epoch = 2
	assert.Equal(t, time.Minute, rp.Lag(v, false, now))
}

func TestTheOwnerConfirmsOnlyReplicasOfTheRootItStillHas(t *testing.T) {
	ctx := context.Background()
	r, _ := newRegistry(t)
	create(t, r, "db", "node-a")
	at := time.Now().UTC()
	started := at.Add(-time.Hour)
	for node, root := range map[string]string{"node-b": "ab", "node-c": "cd"} {
		require.NoError(t, r.PutReplica(ctx, cluster.Replica{Volume: "db", Node: node, Epoch: 1, Started: started, Synced: started, Root: root}))
	}
	_, err := r.ConfirmReplicas(ctx, "db", "node-b", 1, "ab", at)
	require.ErrorIs(t, err, cluster.ErrStaleEpoch, "only the owner confirms")
	_, err = r.ConfirmReplicas(ctx, "db", "node-a", 2, "ab", at)
	require.ErrorIs(t, err, cluster.ErrStaleEpoch, "only at the owner's epoch")

	nodes, err := r.ConfirmReplicas(ctx, "db", "node-a", 1, "ab", at)
	require.NoError(t, err)
	assert.Equal(t, []string{"node-b"}, nodes, "a replica of another root is not current")
	v, err := r.Get(ctx, "db")
	require.NoError(t, err)
	got, err := r.Replicas(ctx, "db")
	require.NoError(t, err)
	lag := map[string]time.Duration{}
	for _, rp := range got {
		lag[rp.Node] = rp.Lag(v.Volume, true, at.Add(time.Second))
	}
	assert.Equal(t, time.Second, lag["node-b"])
	assert.Equal(t, time.Hour+time.Second, lag["node-c"])

	nodes, err = r.ConfirmReplicas(ctx, "db", "node-a", 1, "ab", at)
	require.NoError(t, err)
	assert.Empty(t, nodes, "a confirmation no newer than the last writes nothing")
}

// A replica synced clean is current until the volume is mounted again: the mount claim
// says it may lack what is written from then on, before any unmount.
func TestAMountMakesACleanReplicaBehindAgain(t *testing.T) {
	ctx := context.Background()
	r, s := newRegistry(t)
	create(t, r, "db", "node-a")
	now := time.Now().UTC()
	require.NoError(t, r.PutReplica(ctx, cluster.Replica{Volume: "db", Node: "node-b", Epoch: 1, Started: now.Add(-time.Minute), Synced: now, Clean: true, Root: "ab"}))
	e, err := r.Get(ctx, "db")
	require.NoError(t, err)
	rps, err := r.Replicas(ctx, "db")
	require.NoError(t, err)
	assert.Zero(t, rps[0].Lag(e.Volume, false, now), "clean, and nothing mounts it")

	c, err := r.ClaimMount(ctx, "db", "node-a", lease(t, s), 1)
	require.NoError(t, err)
	require.NoError(t, r.Release(ctx, c)) // unmounted: the mark goes, before any sync
	rps, err = r.Replicas(ctx, "db")
	require.NoError(t, err)
	assert.False(t, rps[0].Clean)
	assert.Equal(t, time.Minute, rps[0].Lag(e.Volume, false, now), "it may lack what the mount wrote")
}
