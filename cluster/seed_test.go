package cluster_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/progress"
)

// A volume being filled from its source is neither mounted, moved nor copied by another
// node; its owner takes the claim again under a new lease, and the fill's end records
// the tree and frees the volume.
func TestASeedClaimHoldsTheVolumeUntilTheFillIsRecorded(t *testing.T) {
	ctx := context.Background()
	r, s := newRegistry(t)
	create(t, r, "db", "node-a")
	la, lb := lease(t, s), lease(t, s)

	_, err := r.BeginSeed(ctx, "db", "node-b", "https://example.test/db.tar", lb)
	require.ErrorIs(t, err, cluster.ErrNotOwner, "only the owner fills a volume")
	c, err := r.BeginSeed(ctx, "db", "node-a", "https://example.test/db.tar", la)
	require.NoError(t, err)
	require.NoError(t, r.PutProgress(ctx, c, progress.Transfer{Kind: progress.KindSeed, From: c.From, To: "node-a", Counts: progress.Counts{Bytes: 1, Total: 4}}, la))
	e, err := r.Get(ctx, "db")
	require.NoError(t, err)
	assert.Equal(t, cluster.StateFilling, e.State())
	p, err := r.Progress(ctx, "db")
	require.NoError(t, err)
	assert.Equal(t, progress.KindSeed, p.Kind, "the seed's progress reads back as a seed")

	_, _, err = r.BeginMigration(ctx, "db", "node-b", lb)
	require.ErrorIs(t, err, cluster.ErrInUse)
	assert.Contains(t, err.Error(), `being filled from its source on node "node-a"`)
	_, _, err = r.BeginCopy(ctx, "db", "node-b", lb)
	require.ErrorIs(t, err, cluster.ErrInUse)

	again, err := r.BeginSeed(ctx, "db", "node-a", "https://example.test/db.tar", lease(t, s))
	require.NoError(t, err, "the owner restarted: it takes its seed claim over")
	require.NoError(t, r.Release(ctx, c), "the old claim is gone already")

	_, err = r.FinishSeed(ctx, "db", "node-a", 2, 10, "ab")
	require.ErrorIs(t, err, cluster.ErrStaleEpoch)
	v, err := r.FinishSeed(ctx, "db", "node-a", 1, 10, "ab")
	require.NoError(t, err)
	assert.Equal(t, int64(10), v.Size)
	e, err = r.Get(ctx, "db")
	require.NoError(t, err)
	assert.Equal(t, cluster.StateIdle, e.State(), "the seed claim went with the fill's record")
	assert.Equal(t, "ab", e.Volume.Root)
	p, err = r.Progress(ctx, "db")
	require.NoError(t, err)
	assert.Nil(t, p, "and so did its progress")
	require.NoError(t, r.Release(ctx, again))
}
