package cluster_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/cluster/embedded"
	"github.com/drayage/drayage/cluster/storetest"
)

// newRegistry gives each test a fresh prefix in an embedded etcd server of its own.
func newRegistry(t *testing.T) (*cluster.Registry, cluster.Store) {
	t.Helper()
	s, err := embedded.Start(context.Background(), embedded.Options{
		Dir:        filepath.Join(t.TempDir(), "store"),
		Name:       "test",
		ClientAddr: fmt.Sprintf("127.0.0.1:%d", storetest.FreePort(t)),
		PeerAddr:   fmt.Sprintf("127.0.0.1:%d", storetest.FreePort(t)),
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return cluster.NewRegistry(s, "test/"), s
}

func lease(t *testing.T, s cluster.Store) cluster.Lease {
	t.Helper()
	l, err := s.Grant(context.Background(), 2*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close(context.Background()) })
	return l
}

func create(t *testing.T, r *cluster.Registry, name, owner string) cluster.Volume {
	t.Helper()
	e, created, err := r.Create(context.Background(), cluster.Volume{Name: name, Owner: owner, Created: time.Now().UTC()})
	require.NoError(t, err)
	require.True(t, created)
	return e.Volume
}

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

func TestNodesAreRecorded(t *testing.T) {
	ctx := context.Background()
	r, _ := newRegistry(t)
	now := time.Now().UTC().Truncate(time.Second)
	require.NoError(t, r.PutNode(ctx, cluster.Node{Name: "node-b", Addresses: []string{"10.0.0.2"}, LastSeen: now}))
	require.NoError(t, r.PutNode(ctx, cluster.Node{Name: "node-a", LastSeen: now}))
	nodes, err := r.Nodes(ctx)
	require.NoError(t, err)
	require.Len(t, nodes, 2)
	assert.Equal(t, "node-a", nodes[0].Name)
	assert.Equal(t, []string{"10.0.0.2"}, nodes[1].Addresses)
	assert.True(t, now.Equal(nodes[1].LastSeen))

	b, err := r.Node(ctx, "node-b")
	require.NoError(t, err)
	assert.Equal(t, []string{"10.0.0.2"}, b.Addresses)
	_, err = r.Node(ctx, "node-c")
	require.ErrorIs(t, err, cluster.ErrNotFound)
}

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
	want := cluster.Progress{Kind: cluster.ClaimMigrate, Node: "node-b", From: "node-a", Bytes: 41, Total: 100, Files: 1, TotalFiles: 3, Rate: 7, Started: started, Updated: started}
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
