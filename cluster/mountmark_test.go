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

// lapsedMount makes volume db, held by node-a, mounted there by mounts containers on a
// lease that then lapses.
func lapsedMount(t *testing.T, mounts int) (*cluster.Registry, cluster.Store) {
	t.Helper()
	ctx := context.Background()
	r, s := newRegistry(t)
	create(t, r, "db", "node-a")
	la, err := s.Grant(ctx, 2*time.Second)
	require.NoError(t, err)
	_, err = r.ClaimMount(ctx, "db", "node-a", la, mounts)
	require.NoError(t, err)
	require.NoError(t, la.Close(ctx))
	return r, s
}

// A node whose lease lapses while containers mount a volume (paused, or cut off from the
// store) loses its claim, but its mark stays: the volume is not removed, moved or copied
// meanwhile, unless an operator forces the removal.
func TestAMountOutlivesItsLapsedLeaseAsAMark(t *testing.T) {
	ctx := context.Background()
	r, s := lapsedMount(t, 1) // the lease lapses: the claim goes with it

	e, err := r.Get(ctx, "db")
	require.NoError(t, err)
	assert.Nil(t, e.Claim)
	list, err := r.List(ctx)
	require.NoError(t, err)
	require.NotNil(t, list[0].Mark)
	assert.Equal(t, cluster.StateMounted, list[0].State(), "listed as mounted, by its mark")

	_, err = r.MarkRemoving(ctx, "db", cluster.RemoveOptions{By: "node-b"})
	require.ErrorIs(t, err, cluster.ErrMountLapsed)
	var lapsed *cluster.LapsedError
	require.ErrorAs(t, err, &lapsed)
	assert.Equal(t, "node-a", lapsed.Mark.Node)
	assert.Equal(t, 1, lapsed.Mark.Mounts)
	_, _, err = r.BeginMigration(ctx, "db", "node-b", lease(t, s))
	require.ErrorIs(t, err, cluster.ErrMountLapsed, "nor moved")
	_, _, err = r.BeginCopy(ctx, "db", "node-b", lease(t, s))
	require.ErrorIs(t, err, cluster.ErrMountLapsed, "nor copied")

	// node-a comes back and claims its mount again; its last unmount takes the mark away.
	c, err := r.ClaimMount(ctx, "db", "node-a", lease(t, s), 1)
	require.NoError(t, err)
	require.NoError(t, r.Release(ctx, c))
	m, err := r.Mark(ctx, "db")
	require.NoError(t, err)
	assert.Nil(t, m)
	_, err = r.MarkRemoving(ctx, "db", cluster.RemoveOptions{By: "node-b"})
	require.NoError(t, err)
}

func TestAForcedRemovalDropsTheMarkOfANodeGoneForGood(t *testing.T) {
	ctx := context.Background()
	r, s := lapsedMount(t, 3)
	v, err := r.MarkRemoving(ctx, "db", cluster.RemoveOptions{By: "node-b", Force: true})
	require.NoError(t, err)
	assert.True(t, v.Removing)
	m, err := r.Mark(ctx, "db")
	require.NoError(t, err)
	assert.Nil(t, m)
	// Force never overrides a live claim.
	create(t, r, "live", "node-a")
	_, err = r.ClaimMount(ctx, "live", "node-a", lease(t, s), 1)
	require.NoError(t, err)
	_, err = r.MarkRemoving(ctx, "live", cluster.RemoveOptions{By: "node-b", Force: true})
	require.ErrorIs(t, err, cluster.ErrInUse)
}

func TestTheOwnerClearsAMarkItLeftWhenItMountsNothingAnyMore(t *testing.T) {
	ctx := context.Background()
	r, _ := lapsedMount(t, 1)
	require.NoError(t, r.ClearMark(ctx, "db", "node-b"), "another node's word changes nothing")
	m, err := r.Mark(ctx, "db")
	require.NoError(t, err)
	require.NotNil(t, m)
	require.NoError(t, r.ClearMark(ctx, "db", "node-a"))
	m, err = r.Mark(ctx, "db")
	require.NoError(t, err)
	assert.Nil(t, m)
}
