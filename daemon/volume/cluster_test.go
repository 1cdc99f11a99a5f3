package volume

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/cluster/clustertest"
	"github.com/drayage/drayage/cluster/embedded"
	"github.com/drayage/drayage/cluster/storetest"
	"github.com/drayage/drayage/daemon/localstore"
)

// Two nodes over one store see one set of volumes; a name created on both is one volume.
func TestTwoNodesShareOneSetOfVolumes(t *testing.T) {
	ctx := context.Background()
	fa := newFixture(t)
	fb := newNode(t, "node-b", fa.reg)
	a, b := fa.start(t), fb.start(t)

	require.NoError(t, a.Create(ctx, "db", map[string]string{"uid": "999"}))
	require.NoError(t, b.Create(ctx, "logs", nil))
	for _, m := range []*Manager{a, b} {
		list, err := m.List(ctx)
		require.NoError(t, err)
		require.Len(t, list, 2)
		assert.Equal(t, "db", list[0].Name)
		assert.Equal(t, "node-a", list[0].Node)
		assert.Equal(t, "logs", list[1].Name)
		assert.Equal(t, "node-b", list[1].Node)
	}

	// Create of the same name on B is the same volume: no duplicate, no empty copy.
	require.NoError(t, b.Create(ctx, "db", map[string]string{"uid": "999"}))
	assert.NoDirExists(t, filepath.Join(fb.root, "volumes", "db"))
	err := b.Create(ctx, "db", nil)
	require.ErrorIs(t, err, ErrOptionsConflict)
	assert.Contains(t, err.Error(), `volume "db" on node "node-a"`)

	info, err := b.Get(ctx, "db")
	require.NoError(t, err)
	assert.Equal(t, "node-a", info.Node)
	assert.Equal(t, StateIdle, info.State)
	assert.Equal(t, uint64(1), info.Epoch)
}

func TestMountTakesAClaimThatOtherNodesSee(t *testing.T) {
	ctx := context.Background()
	fa := newFixture(t)
	fb := newNode(t, "node-b", fa.reg)
	a, b := fa.start(t), fb.start(t)
	require.NoError(t, a.Create(ctx, "db", nil))

	_, err := b.Mount(ctx, "db", "c9")
	require.ErrorIs(t, err, ErrElsewhere)
	assert.Contains(t, err.Error(), `volume "db" is held by node "node-a", not "node-b"`)
	assert.Contains(t, err.Error(), `this node runs alone`)

	_, err = a.Mount(ctx, "db", "c1")
	require.NoError(t, err)
	_, err = a.Mount(ctx, "db", "c2")
	require.NoError(t, err)
	info, err := b.Get(ctx, "db")
	require.NoError(t, err)
	assert.Equal(t, StateMounted, info.State)
	assert.Equal(t, 2, info.Mounts)
	assert.Equal(t, "node-a", info.Claim.Node)
	assert.Empty(t, info.Mountpoint, "not mounted on node-b")

	err = b.Remove(ctx, "db")
	require.ErrorIs(t, err, ErrInUse)
	assert.Equal(t, `volume "db" is mounted on node "node-a" by 2 containers; stop and remove the containers using it there, then remove the volume`, err.Error())

	require.NoError(t, a.Unmount(ctx, "db", "c1"))
	require.NoError(t, a.Unmount(ctx, "db", "c2"))
	info, err = b.Get(ctx, "db")
	require.NoError(t, err)
	assert.Equal(t, StateIdle, info.State)
	assert.Nil(t, info.Claim)
}

func TestRemoveOnAnotherNodeIsFinishedByTheOwner(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fa := newFixture(t)
	fb := newNode(t, "node-b", fa.reg)
	connect(fa, fb)
	a, b := fa.start(t), fb.start(t)
	go a.WatchRemovals(ctx)
	require.NoError(t, a.Create(ctx, "db", nil))
	require.DirExists(t, filepath.Join(fa.root, "volumes", "db"))

	require.NoError(t, b.Remove(ctx, "db"))
	_, err := b.Get(ctx, "db")
	require.ErrorIs(t, err, ErrNotFound, "gone for everyone at once")
	require.Eventually(t, func() bool {
		_, err := fa.reg.Get(ctx, "db")
		_, statErr := os.Stat(filepath.Join(fa.root, "volumes", "db"))
		return err != nil && os.IsNotExist(statErr)
	}, 10*time.Second, 50*time.Millisecond, "node-a deletes the data, then the record")
	require.NoError(t, b.Create(ctx, "db", nil), "the name is free again")
}

func TestRemovalMarkedWhileTheOwnerWasDownIsFinishedAtItsStart(t *testing.T) {
	ctx := context.Background()
	fa := newFixture(t)
	fb := newNode(t, "node-b", fa.reg)
	connect(fa, fb)
	a := fa.start(t)
	require.NoError(t, a.Create(ctx, "db", nil))
	// node-a stops; node-b removes the volume meanwhile.
	b := fb.start(t)
	require.NoError(t, b.Remove(ctx, "db"))
	err := b.Create(ctx, "db", nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `being removed from node "node-a"`)

	fa.start(t) // node-a comes back and finishes the removal
	_, err = fa.reg.Get(ctx, "db")
	require.ErrorIs(t, err, cluster.ErrVolumeNotFound)
	assert.NoDirExists(t, filepath.Join(fa.root, "volumes", "db"))
}

func TestVolumesOnDiskAreRegisteredInAnEmptyStore(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	m := f.start(t)
	require.NoError(t, m.Create(ctx, "kept", map[string]string{"mode": "0700"}))
	_, err := m.Mount(ctx, "kept", "c1")
	require.NoError(t, err)

	// The daemon restarts against a store that has never seen the volume (a new cluster,
	// a wiped store): the data is not lost, the volume is registered and claimed again.
	f.reg = clustertest.Registry(t)
	m2 := f.start(t)
	info, err := m2.Get(ctx, "kept")
	require.NoError(t, err)
	assert.Equal(t, "node-a", info.Node)
	assert.Equal(t, map[string]string{"mode": "0700"}, info.Options)
	assert.Equal(t, StateMounted, info.State)
	assert.Equal(t, 1, info.Mounts)
}

func TestRestartMovesMountClaimsToTheNewLease(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	store := clustertest.Store(t)
	l1, err := store.Grant(ctx, 2*time.Second)
	require.NoError(t, err)
	m := f.manager(t)
	require.NoError(t, m.Init(ctx, f.reg, l1))
	require.NoError(t, m.Create(ctx, "db", nil))
	_, err = m.Mount(ctx, "db", "c1")
	require.NoError(t, err)

	// The daemon restarts with a new lease; the old one is then revoked (or expires).
	m2 := f.manager(t)
	require.NoError(t, m2.Init(ctx, f.reg, clustertest.Lease(t)))
	require.NoError(t, l1.Close(ctx))
	info, err := m2.Get(ctx, "db")
	require.NoError(t, err)
	assert.Equal(t, StateMounted, info.State, "the claim moved to the new lease before the old one ended")
}

func TestLostLeaseIsReplacedAndMountsClaimedAgain(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	store := clustertest.Store(t)
	l1, err := store.Grant(ctx, 2*time.Second)
	require.NoError(t, err)
	m := f.manager(t)
	require.NoError(t, m.Init(ctx, f.reg, l1))
	require.NoError(t, m.Create(ctx, "db", nil))
	_, err = m.Mount(ctx, "db", "c1")
	require.NoError(t, err)

	require.NoError(t, l1.Close(ctx)) // the store lost us: the claim lapsed
	info, err := m.Get(ctx, "db")
	require.NoError(t, err)
	assert.Nil(t, info.Claim)
	assert.Equal(t, StateMounted, info.State, "its mount mark outlives the lease")
	assert.Contains(t, info.Problem, "stopped renewing its lease")

	m.SetLease(ctx, clustertest.Lease(t))
	info, err = m.Get(ctx, "db")
	require.NoError(t, err)
	assert.Equal(t, StateMounted, info.State)
	assert.NotNil(t, info.Claim)
	assert.Empty(t, info.Problem)
	assert.Equal(t, 1, info.Mounts)
	require.NoError(t, m.Unmount(ctx, "db", "c1"))
	info, err = m.Get(ctx, "db")
	require.NoError(t, err)
	assert.Equal(t, StateIdle, info.State)
}

// Get must not fail for a store outage: the engine would forget the volume.
func TestGetDuringAStoreOutageDescribesTheProblem(t *testing.T) {
	ctx := context.Background()
	srv, err := embedded.Start(ctx, embedded.Options{
		Dir: filepath.Join(t.TempDir(), "store"), Name: "outage",
		ClientAddr: fmt.Sprintf("127.0.0.1:%d", storetest.FreePort(t)),
		PeerAddr:   fmt.Sprintf("127.0.0.1:%d", storetest.FreePort(t)),
	})
	require.NoError(t, err)
	f := newFixture(t)
	f.reg = cluster.NewRegistry(srv, "outage/")
	lease, err := srv.Grant(ctx, 2*time.Second)
	require.NoError(t, err)
	m := f.manager(t)
	require.NoError(t, m.Init(ctx, f.reg, lease))
	require.NoError(t, m.Create(ctx, "db", nil))

	require.NoError(t, srv.Close()) // the store goes away
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	info, err := m.Get(short, "db")
	require.NoError(t, err)
	assert.Equal(t, "node-a", info.Node)
	assert.Contains(t, info.Problem, "cluster store")
	assert.Contains(t, info.Problem, "DRAYAGE_STORE")
	// A name this node holds nothing of: an error, not a volume (the engine would take a
	// volume for one that exists, and 'docker volume create' would create nothing).
	_, err = m.Get(short, "unknown")
	require.Error(t, err)
	assert.NotErrorIs(t, err, ErrNotFound)
	assert.Contains(t, err.Error(), "cluster store")

	short2, cancel2 := context.WithTimeout(ctx, 2*time.Second)
	defer cancel2()
	list, err := m.List(short2)
	require.NoError(t, err, "List falls back to the volumes held here")
	require.Len(t, list, 1)

	short3, cancel3 := context.WithTimeout(ctx, 2*time.Second)
	defer cancel3()
	_, err = m.Mount(short3, "db", "c1")
	require.Error(t, err, "but nothing is mounted without a claim")
	assert.Contains(t, err.Error(), `volume db: cluster store`)
}

func TestOnlyTheClaimedTargetAtItsEpochIsSentAVolumeAndNeverWhileMounted(t *testing.T) {
	ctx := context.Background()
	fa := newFixture(t)
	a := fa.start(t)
	require.NoError(t, a.Create(ctx, "db", nil))

	_, err := a.SendDir(ctx, "db", "node-b", 2)
	require.ErrorIs(t, err, cluster.ErrStaleEpoch, "no migration claim, nothing is sent")

	claim, _, err := fa.reg.BeginMigration(ctx, "db", "node-b", clustertest.Lease(t))
	require.NoError(t, err)
	dir, err := a.SendDir(ctx, "db", "node-b", claim.Epoch)
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(fa.root, "volumes", "db", "data"), dir)
	_, err = a.SendDir(ctx, "db", "node-c", claim.Epoch)
	require.ErrorIs(t, err, cluster.ErrStaleEpoch, "another node")
	_, err = a.SendDir(ctx, "db", "node-b", claim.Epoch+1)
	require.ErrorIs(t, err, cluster.ErrStaleEpoch, "another epoch")

	// Mounted here (a container started while the claim stood): refused.
	store, err := localstore.Open(fa.root)
	require.NoError(t, err)
	rec, err := store.Load("db")
	require.NoError(t, err)
	rec.Mounts = map[string]int{"c1": 1}
	require.NoError(t, store.Save(rec))
	_, err = a.SendDir(ctx, "db", "node-b", claim.Epoch)
	require.ErrorIs(t, err, ErrInUse)
	assert.Contains(t, err.Error(), `mounted by 1 container on node "node-a"`)
}

func TestDeleteSaysWhatIsMissingAndWhereTheVolumeIsMounted(t *testing.T) {
	ctx := context.Background()
	fa := newFixture(t)
	fb := newNode(t, "node-b", fa.reg)
	a, b := fa.start(t), fb.start(t)
	require.NoError(t, a.Create(ctx, "db", nil))

	_, err := b.Delete(ctx, "nope", DeleteOptions{})
	require.ErrorIs(t, err, ErrNotFound)
	assert.Equal(t, `volume "nope": no such volume in the cluster; see 'drayage volume ls'`, err.Error())
	require.NoError(t, b.Remove(ctx, "nope"), "the engine's Remove of nothing succeeds")

	_, err = a.Mount(ctx, "db", "c1")
	require.NoError(t, err)
	_, err = a.Delete(ctx, "db", DeleteOptions{})
	require.ErrorIs(t, err, ErrInUse)
	assert.Equal(t, `volume "db" is mounted by 1 container on node "node-a": volume in use; stop and remove the containers using it, then remove the volume`, err.Error())
	_, err = b.Delete(ctx, "db", DeleteOptions{})
	require.ErrorIs(t, err, ErrInUse)
	assert.Equal(t, `volume "db" is mounted on node "node-a" by 1 container; stop and remove the containers using it there, then remove the volume`, err.Error())

	require.NoError(t, a.Unmount(ctx, "db", "c1"))
	res, err := b.Delete(ctx, "db", DeleteOptions{})
	require.NoError(t, err)
	assert.Equal(t, RemoveResult{Volume: "db", Node: "node-a"}, res, "node-a deletes the data")
	_, err = b.Delete(ctx, "db", DeleteOptions{})
	require.NoError(t, err, "a removal under way is no error")
}
