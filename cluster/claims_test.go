package cluster_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/cluster"
)

// newRegistry gives each test a fresh prefix in an embedded etcd server of its own.

func TestOnlyTheOwnerMayClaimAMount(t *testing.T) {
	ctx := context.Background()
	r, s := newRegistry(t)
	create(t, r, "db", "node-a")
	la := lease(t, s)

	_, err := r.ClaimMount(ctx, "db", "node-a", la, 1)
	require.NoError(t, err)
	c, err := r.ClaimMount(ctx, "db", "node-a", la, 2)
	require.NoError(t, err, "the owner updates its count")
	e, err := r.Get(ctx, "db")
	require.NoError(t, err)
	assert.Equal(t, cluster.StateMounted, e.State())
	assert.Equal(t, 2, e.Claim.Mounts)

	_, err = r.ClaimMount(ctx, "db", "node-b", lease(t, s), 1)
	require.ErrorIs(t, err, cluster.ErrNotOwner)
	assert.Contains(t, err.Error(), `held by node "node-a"`)

	require.NoError(t, r.Release(ctx, c))
	e, err = r.Get(ctx, "db")
	require.NoError(t, err)
	assert.Equal(t, cluster.StateIdle, e.State())
	require.NoError(t, r.Release(ctx, c), "releasing twice is harmless")
}

// A claim decided from an entry read earlier is written only if the entry is still
// current: otherwise the store is read again and the claim decided anew.
func TestAClaimFromAStaleEntryIsDecidedAgain(t *testing.T) {
	ctx := context.Background()
	r, s := newRegistry(t)
	create(t, r, "db", "node-a")
	la := lease(t, s)

	idle, err := r.Get(ctx, "db")
	require.NoError(t, err)
	_, err = r.ClaimMountOf(ctx, idle, "node-a", la, 1)
	require.NoError(t, err, "a current entry")
	_, err = r.ClaimMountOf(ctx, idle, "node-a", la, 2)
	require.NoError(t, err, "the entry says idle, the store says mounted once: read again, the count is updated")
	e, err := r.Get(ctx, "db")
	require.NoError(t, err)
	assert.Equal(t, 2, e.Claim.Mounts)
	require.NoError(t, r.Release(ctx, e.Claim))

	// The volume moved on after the entry was read: its old owner's claim is refused.
	lb := lease(t, s)
	claim, _, err := r.BeginMigration(ctx, "db", "node-b", lb)
	require.NoError(t, err)
	_, _, err = r.CommitMigration(ctx, claim, 1, "", lb, 0)
	require.NoError(t, err)
	_, err = r.ClaimMountOf(ctx, idle, "node-a", la, 1)
	require.ErrorIs(t, err, cluster.ErrNotOwner, "the entry said node-a; the store, read again, says node-b")
}

func TestMigrationIsFencedByClaimAndEpoch(t *testing.T) {
	ctx := context.Background()
	r, s := newRegistry(t)
	create(t, r, "db", "node-a")
	la, lb, lc := lease(t, s), lease(t, s), lease(t, s)

	// Mounted on the owner: no migration.
	mc, err := r.ClaimMount(ctx, "db", "node-a", la, 1)
	require.NoError(t, err)
	_, _, err = r.BeginMigration(ctx, "db", "node-b", lb)
	require.ErrorIs(t, err, cluster.ErrInUse)
	assert.Contains(t, err.Error(), `mounted on node "node-a"`)
	require.NoError(t, r.Release(ctx, mc))

	claim, from, err := r.BeginMigration(ctx, "db", "node-b", lb)
	require.NoError(t, err)
	assert.Equal(t, "node-a", from.Owner)
	assert.Equal(t, uint64(2), claim.Epoch)
	e, err := r.Get(ctx, "db")
	require.NoError(t, err)
	assert.Equal(t, cluster.StateMigrating, e.State())

	// Everyone else is refused while it runs.
	_, _, err = r.BeginMigration(ctx, "db", "node-c", lc)
	require.ErrorIs(t, err, cluster.ErrMigrating)
	_, err = r.ClaimMount(ctx, "db", "node-a", la, 1)
	require.ErrorIs(t, err, cluster.ErrMigrating)
	_, err = r.MarkRemoving(ctx, "db", cluster.RemoveOptions{By: "node-b"})
	require.ErrorIs(t, err, cluster.ErrMigrating)

	// The owner serves only the node and epoch named in the claim.
	require.NoError(t, r.CheckTransfer(ctx, "db", "node-b", 2))
	require.ErrorIs(t, r.CheckTransfer(ctx, "db", "node-c", 2), cluster.ErrStaleEpoch)
	require.ErrorIs(t, r.CheckTransfer(ctx, "db", "node-b", 1), cluster.ErrStaleEpoch)

	v, mount, err := r.CommitMigration(ctx, claim, 4096, "", lb, 1)
	require.NoError(t, err)
	assert.Equal(t, "node-b", v.Owner)
	assert.Equal(t, uint64(2), v.Epoch)
	assert.Equal(t, cluster.ClaimMount, mount.Kind)
	e, err = r.Get(ctx, "db")
	require.NoError(t, err)
	assert.Equal(t, "node-b", e.Volume.Owner)
	assert.Equal(t, int64(4096), e.Volume.Size)
	assert.Equal(t, cluster.StateMounted, e.State())

	// The old owner's writes carry epoch 1 and are refused; the new owner's pass.
	require.ErrorIs(t, r.UpdateSize(ctx, "db", "node-a", 1, 1), cluster.ErrStaleEpoch)
	require.NoError(t, r.UpdateSize(ctx, "db", "node-b", 2, 8192))
	_, _, err = r.CommitMigration(ctx, claim, 1, "", lb, 0)
	require.ErrorIs(t, err, cluster.ErrClaimLost, "a migration commits once")
}

func TestLostLeaseReturnsTheVolumeToItsOwner(t *testing.T) {
	ctx := context.Background()
	r, s := newRegistry(t)
	create(t, r, "db", "node-a")
	lb, err := s.Grant(ctx, 2*time.Second)
	require.NoError(t, err)
	claim, _, err := r.BeginMigration(ctx, "db", "node-b", lb)
	require.NoError(t, err)

	require.NoError(t, lb.Close(ctx)) // the target dies mid-pull
	e, err := r.Get(ctx, "db")
	require.NoError(t, err)
	assert.Equal(t, cluster.StateIdle, e.State())
	assert.Equal(t, "node-a", e.Volume.Owner, "the old owner keeps the volume")
	assert.Equal(t, uint64(1), e.Volume.Epoch)

	_, _, err = r.CommitMigration(ctx, claim, 1, "", lease(t, s), 0)
	require.ErrorIs(t, err, cluster.ErrClaimLost)
	require.ErrorIs(t, r.CheckTransfer(ctx, "db", "node-b", 2), cluster.ErrStaleEpoch)
}

func TestCommitRefusesARecordThatChangedUnderneath(t *testing.T) {
	ctx := context.Background()
	r, s := newRegistry(t)
	create(t, r, "db", "node-a")
	lb := lease(t, s)
	claim, _, err := r.BeginMigration(ctx, "db", "node-b", lb)
	require.NoError(t, err)
	require.NoError(t, r.UpdateSize(ctx, "db", "node-a", 1, 99)) // the record moves on
	_, _, err = r.CommitMigration(ctx, claim, 1, "", lb, 0)
	require.ErrorIs(t, err, cluster.ErrStaleEpoch)
	e, err := r.Get(ctx, "db")
	require.NoError(t, err)
	assert.Equal(t, "node-a", e.Volume.Owner)
}

func TestSixteenNodesRaceToMigrateOneWins(t *testing.T) {
	ctx := context.Background()
	r, s := newRegistry(t)
	create(t, r, "db", "node-a")
	var wins, refused atomic.Int32
	var wg sync.WaitGroup
	for i := range 16 {
		l := lease(t, s)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, err := r.BeginMigration(ctx, "db", fmt.Sprintf("node-%d", i+1), l)
			switch {
			case err == nil:
				wins.Add(1)
			case assert.ErrorIs(t, err, cluster.ErrMigrating):
				refused.Add(1)
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, int32(1), wins.Load())
	assert.Equal(t, int32(15), refused.Load())
}

func TestCopyClaimHoldsTheSourceUntilTheCopyIsRecorded(t *testing.T) {
	ctx := context.Background()
	r, s := newRegistry(t)
	create(t, r, "db", "node-a")
	la, lb, lc := lease(t, s), lease(t, s), lease(t, s)

	mc, err := r.ClaimMount(ctx, "db", "node-a", la, 1)
	require.NoError(t, err)
	_, _, err = r.BeginCopy(ctx, "db", "node-b", lb)
	require.ErrorIs(t, err, cluster.ErrInUse, "a mounted volume is not copied")
	assert.Contains(t, err.Error(), `volume "db" is mounted on node "node-a" by 1 container(s)`)
	require.NoError(t, r.Release(ctx, mc))

	claim, _, err := r.BeginCopy(ctx, "db", "node-b", lb)
	require.NoError(t, err)
	assert.Equal(t, cluster.ClaimCopy, claim.Kind)
	assert.Equal(t, uint64(1), claim.Epoch, "a copy changes no owner")
	assert.Equal(t, "node-a", claim.From)
	e, err := r.Get(ctx, "db")
	require.NoError(t, err)
	assert.Equal(t, cluster.StateCopying, e.State())

	// Nobody mounts, moves, copies or removes it meanwhile.
	_, err = r.ClaimMount(ctx, "db", "node-a", la, 1)
	require.ErrorIs(t, err, cluster.ErrInUse)
	assert.Contains(t, err.Error(), `volume "db" is being copied to node "node-b"`)
	_, _, err = r.BeginMigration(ctx, "db", "node-c", lc)
	require.ErrorIs(t, err, cluster.ErrInUse)
	_, _, err = r.BeginCopy(ctx, "db", "node-c", lc)
	require.ErrorIs(t, err, cluster.ErrInUse)
	_, err = r.MarkRemoving(ctx, "db", cluster.RemoveOptions{By: "node-b"})
	require.ErrorIs(t, err, cluster.ErrInUse)

	// The owner sends it to that node at that epoch only.
	require.NoError(t, r.CheckTransfer(ctx, "db", "node-b", 1))
	require.ErrorIs(t, r.CheckTransfer(ctx, "db", "node-b", 2), cluster.ErrStaleEpoch)
	require.ErrorIs(t, r.CheckTransfer(ctx, "db", "node-c", 1), cluster.ErrStaleEpoch)

	v, err := r.FinishCopy(ctx, claim, cluster.Volume{Name: "db2", Owner: "node-b", Size: 10, Options: map[string]string{"uid": "5"}})
	require.NoError(t, err)
	assert.Equal(t, uint64(1), v.Epoch)
	e, err = r.Get(ctx, "db2")
	require.NoError(t, err)
	assert.Equal(t, "node-b", e.Volume.Owner)
	assert.Equal(t, int64(10), e.Volume.Size)
	e, err = r.Get(ctx, "db")
	require.NoError(t, err)
	assert.Equal(t, cluster.StateIdle, e.State(), "the source is free again")
	assert.Equal(t, "node-a", e.Volume.Owner)
	assert.Equal(t, uint64(1), e.Volume.Epoch)
	require.ErrorIs(t, r.CheckTransfer(ctx, "db", "node-b", 1), cluster.ErrStaleEpoch, "the copy is over")

	// A name taken meanwhile, and a claim lost with its lease, record nothing.
	claim, _, err = r.BeginCopy(ctx, "db", "node-a", la)
	require.NoError(t, err, "the owner may copy its own volume")
	create(t, r, "db3", "node-c")
	_, err = r.FinishCopy(ctx, claim, cluster.Volume{Name: "db3", Owner: "node-a"})
	require.ErrorIs(t, err, cluster.ErrVolumeExists)
	assert.Contains(t, err.Error(), `volume "db3" exists already, on node "node-c"`)
	require.NoError(t, r.Release(ctx, claim))

	ld, err := s.Grant(ctx, 2*time.Second)
	require.NoError(t, err)
	claim, _, err = r.BeginCopy(ctx, "db", "node-d", ld)
	require.NoError(t, err)
	require.NoError(t, ld.Close(ctx))
	_, err = r.FinishCopy(ctx, claim, cluster.Volume{Name: "db4", Owner: "node-d"})
	require.ErrorIs(t, err, cluster.ErrClaimLost)
	_, err = r.Get(ctx, "db4")
	require.ErrorIs(t, err, cluster.ErrVolumeNotFound)
}
