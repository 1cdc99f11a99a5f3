package cluster_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/progress"
)

// newRegistry gives each test a fresh prefix in an embedded etcd server of its own.

func TestProgressIsSeenByAllWhileItsClaimHoldsAndGoesWithItsLease(t *testing.T) {
	ctx := context.Background()
	r, s := newRegistry(t)
	create(t, r, "db", "node-a")
	lb, err := s.Grant(ctx, 2*time.Second)
	require.NoError(t, err)
	p, err := r.Progress(ctx, "db")
	require.NoError(t, err)
	assert.Nil(t, p, "no transfer, no progress")

	claim, _, err := r.BeginMigration(ctx, "db", "node-b", lb)
	require.NoError(t, err)
	started := time.Now().UTC().Truncate(time.Second)
	want := progress.Transfer{Kind: progress.KindMove, To: "node-b", From: "node-a", Started: started, Updated: started.Add(2 * time.Second),
		Counts: progress.Counts{Bytes: 41, Total: 100, Files: 1, TotalFiles: 3}}
	require.NoError(t, r.PutProgress(ctx, claim, want, lb))
	p, err = r.Progress(ctx, "db")
	require.NoError(t, err)
	want.Volume = "db"
	assert.Equal(t, &want, p)

	require.NoError(t, r.DeleteProgress(ctx, claim))
	p, err = r.Progress(ctx, "db")
	require.NoError(t, err)
	assert.Nil(t, p)

	require.NoError(t, r.PutProgress(ctx, claim, want, lb))
	require.NoError(t, lb.Close(ctx)) // the receiver dies mid-pull
	p, err = r.Progress(ctx, "db")
	require.NoError(t, err)
	assert.Nil(t, p, "the progress went with the receiver's lease")
	err = r.PutProgress(ctx, claim, want, lease(t, s))
	require.ErrorIs(t, err, cluster.ErrClaimLost, "a transfer that lost its claim records nothing")
	p, err = r.Progress(ctx, "db")
	require.NoError(t, err)
	assert.Nil(t, p)
}
