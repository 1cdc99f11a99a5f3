package cluster_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/cluster"
)

// A replica is promoted only once its owner's lease lapsed, in one transaction that one
// of two racing nodes wins; the promotion is kept for the old owner to compare with.
func TestAReplicaIsPromotedOnlyOnceItsOwnersLeaseLapsedAndOnlyOnce(t *testing.T) {
	ctx := context.Background()
	r, s := newRegistry(t)
	create(t, r, "db", "node-a")
	la := lease(t, s)
	require.NoError(t, r.Attend(ctx, "node-a", la))
	now := time.Now().UTC()
	for node, root := range map[string]string{"node-b": "bb", "node-c": "cc"} {
		require.NoError(t, r.PutReplica(ctx, cluster.Replica{Volume: "db", Node: node, Epoch: 1, Started: now, Synced: now, Root: root, Bytes: 7}))
	}
	replica := func(node string) cluster.Replica {
		rps, err := r.Replicas(ctx, "db")
		require.NoError(t, err)
		for _, rp := range rps {
			if rp.Node == node {
				return rp
			}
		}
		t.Fatalf("no replica on %s", node)
		return cluster.Replica{}
	}
	e, err := r.Get(ctx, "db")
	require.NoError(t, err)
	alive, err := r.Alive(ctx, "node-a")
	require.NoError(t, err)
	assert.True(t, alive)
	_, err = r.Promote(ctx, e.Volume, replica("node-b"), time.Second, false)
	require.ErrorIs(t, err, cluster.ErrOwnerAlive, "not while the owner holds its lease, even with nothing mounted")
	_, err = r.ClaimMount(ctx, "db", "node-a", la, 1)
	require.NoError(t, err)
	e, err = r.Get(ctx, "db")
	require.NoError(t, err)

	require.NoError(t, la.Close(ctx)) // the owner dies: its lease, claim and alive key go; its mount mark stays
	alive, err = r.Alive(ctx, "node-a")
	require.NoError(t, err)
	assert.False(t, alive)
	mark, err := r.Mark(ctx, "db")
	require.NoError(t, err)
	require.NotNil(t, mark, "the lapsed mount is still marked")

	b, c := replica("node-b"), replica("node-c")
	v, err := r.Promote(ctx, e.Volume, b, time.Second, false)
	require.NoError(t, err)
	assert.Equal(t, "node-b", v.Owner)
	assert.Equal(t, uint64(2), v.Epoch)
	assert.Equal(t, "bb", v.Root)
	_, err = r.Promote(ctx, e.Volume, c, time.Second, false)
	require.ErrorIs(t, err, cluster.ErrStaleEpoch, "the node that lost the race")

	got, err := r.Get(ctx, "db")
	require.NoError(t, err)
	assert.Equal(t, v, got.Volume)
	mark, err = r.Mark(ctx, "db")
	require.NoError(t, err)
	assert.Nil(t, mark, "the dead owner's mark went with the promotion")
	rps, err := r.Replicas(ctx, "db")
	require.NoError(t, err)
	require.Len(t, rps, 1, "the promoted replica is the volume now")
	assert.Equal(t, "node-c", rps[0].Node)
	p, err := r.PromotionAt(ctx, "db", 1)
	require.NoError(t, err)
	require.NotNil(t, p)
	assert.Equal(t, cluster.Promotion{Volume: "db", From: "node-a", Epoch: 1, To: "node-b", Root: "bb", Bytes: 7, Lag: 1, At: p.At}, *p)
	p, err = r.PromotionAt(ctx, "db", 2)
	require.NoError(t, err)
	assert.Nil(t, p)

	// The removal of the volume takes its promotions with it.
	rv, err := r.MarkRemoving(ctx, "db", cluster.RemoveOptions{By: "node-b"})
	require.NoError(t, err)
	require.NoError(t, r.FinishRemoval(ctx, rv))
	p, err = r.PromotionAt(ctx, "db", 1)
	require.NoError(t, err)
	assert.Nil(t, p)
}
