package volume

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/cluster/clustertest"
	"github.com/drayage/drayage/daemon/localstore"
)

// failoverNodes starts three managers on one store; node-a's lease is returned, to end
// it as a node's death does.
func failoverNodes(t *testing.T) (ms [3]*Manager, fs [3]*fixture, p *fakePuller, la cluster.Lease) {
	fs[0] = newFixture(t)
	fs[1] = newNode(t, "node-b", fs[0].reg)
	fs[2] = newNode(t, "node-c", fs[0].reg)
	p = connect(fs[0], fs[1], fs[2])
	la = clustertest.Lease(t)
	ms[0] = startOn(t, fs[0], p, la)
	for i := 1; i < 3; i++ {
		ms[i] = startOn(t, fs[i], p, clustertest.Lease(t))
	}
	return ms, fs, p, la
}

// startOn starts a manager over fixture f's state on lease, reachable through p, that
// hashes trees as the fake puller does: a node's start, or its restart.
func startOn(t *testing.T, f *fixture, p *fakePuller, lease cluster.Lease) *Manager {
	t.Helper()
	m := f.manager(t)
	m.cfg.TreeRoot = func(_ context.Context, dir string) (string, error) { return treeDigest(dir), nil }
	p.add(f.node, m)
	m.SetPuller(p)
	require.NoError(t, m.Init(context.Background(), f.reg, lease))
	return m
}

// kill makes node n's manager look dead: gossip says so, and its lease lapsed.
func kill(t *testing.T, p *fakePuller, node string, lease cluster.Lease) {
	p.mu.Lock()
	p.down[node] = time.Now()
	p.mu.Unlock()
	require.NoError(t, lease.Close(context.Background()))
}

// A Mount of a volume whose owner died promotes the freshest replica, on the node it
// runs on; the old owner, back, keeps what it wrote after the last sync as a diverged
// copy, and writes nothing over the promoted volume.
func TestAMountWhereTheOwnerDiedPromotesAReplicaAndTheOldOwnerKeepsWhatDiverged(t *testing.T) {
	ctx := context.Background()
	ms, fs, p, la := failoverNodes(t)
	a, b := ms[0], ms[1]
	require.NoError(t, a.Create(ctx, "db", map[string]string{"replicas": "3"}))
	replicasAt(t, fs[0].reg, "db", 1, "node-b", "node-c")
	_, err := a.Mount(ctx, "db", "c1")
	require.NoError(t, err)
	dataA := filepath.Join(fs[0].root, "volumes", "db", "data")
	require.NoError(t, os.WriteFile(filepath.Join(dataA, "synced"), []byte("one"), 0o644))
	require.NoError(t, <-a.scheduleSync("db", time.Now(), true))
	require.NoError(t, os.WriteFile(filepath.Join(dataA, "late"), []byte("after the last sync"), 0o644))

	// While node-a holds its lease, gossip's word is not enough.
	p.mu.Lock()
	p.down["node-a"] = time.Now()
	p.mu.Unlock()
	_, err = b.Mount(ctx, "db", "c2")
	require.ErrorIs(t, err, ErrOwnerDown)
	assert.Contains(t, err.Error(), "still holds its lease in the cluster store")

	// Gossip calls node-a down and its lease lapsed, but it answers node-b: it is not
	// replaced.
	kill(t, p, "node-a", la)
	p.mu.Lock()
	p.answers = map[string]bool{"node-a": true}
	p.mu.Unlock()
	_, err = b.Mount(ctx, "db", "c2")
	require.ErrorIs(t, err, ErrOwnerDown)
	assert.Contains(t, err.Error(), `but which answers node "node-b": it is alive`)
	p.mu.Lock()
	p.answers = nil
	p.mu.Unlock()

	_, err = b.Mount(ctx, "db", "c2")
	require.NoError(t, err)
	e, err := fs[0].reg.Get(ctx, "db")
	require.NoError(t, err)
	assert.Equal(t, "node-b", e.Volume.Owner)
	assert.Equal(t, uint64(2), e.Volume.Epoch)
	dataB := filepath.Join(fs[1].root, "volumes", "db", "data")
	got, err := os.ReadFile(filepath.Join(dataB, "synced"))
	require.NoError(t, err)
	assert.Equal(t, "one", string(got))
	assert.NoFileExists(t, filepath.Join(dataB, "late"), "written after the last sync: lost to the promoted copy")
	rec, err := b.disk.Load("db")
	require.NoError(t, err)
	assert.False(t, rec.Replica(), "node-b holds the volume now")
	assert.Equal(t, uint64(2), rec.Epoch)

	// node-a comes back with its container still running: it refuses to mount the
	// volume, and says why.
	p.mu.Lock()
	delete(p.down, "node-a")
	p.mu.Unlock()
	_, err = a.Mount(ctx, "db", "c3")
	require.ErrorIs(t, err, ErrConflict)
	assert.Contains(t, err.Error(), `volume "db" was promoted on node "node-b" at epoch 2 while node "node-a" was cut off`)
	assert.Contains(t, err.Error(), `kept as volume "db-diverged-1-node-a"`)

	// node-a restarts, as after a crash that took its engine's containers with it: the
	// mount it restores is of a container that died, and holds nothing back. Its copy
	// holds "late", which the volume lacks: it is kept as a volume of its own, and
	// node-a's copy of db goes with it.
	a.Close()
	a = startOn(t, fs[0], p, clustertest.Lease(t))
	keep := DivergedName("db", 1, "node-a")
	assert.Equal(t, "db-diverged-1-node-a", keep)
	kept, err := os.ReadFile(filepath.Join(fs[0].root, "volumes", keep, "data", "late"))
	require.NoError(t, err, "the diverged write is kept")
	assert.Equal(t, "after the last sync", string(kept))
	ke, err := fs[0].reg.Get(ctx, keep)
	require.NoError(t, err, "as a volume every node sees")
	assert.Equal(t, "node-a", ke.Volume.Owner)
	_, err = a.disk.Load("db")
	assert.ErrorIs(t, err, localstore.ErrNotExist)
	require.NoError(t, b.Unmount(ctx, "db", "c2"))

	// The replica count heals: node-b's check finds one replica short, and node-a can
	// hold one again.
	b.Reconcile(ctx)
	replicasAt(t, fs[0].reg, "db", 2, "node-a", "node-c")
}

// A replica further behind than max-lag is not promoted by a Mount: the error says how
// far behind, and the command that accepts the loss, which promotes it.
func TestAReplicaBehindMaxLagIsPromotedOnlyWithAcceptLoss(t *testing.T) {
	ctx := context.Background()
	ms, fs, p, la := failoverNodes(t)
	a, b := ms[0], ms[1]
	require.NoError(t, a.Create(ctx, "db", map[string]string{"replicas": "2", "replica-nodes": "node-b", "max-lag": "0"}))
	replicasAt(t, fs[0].reg, "db", 1, "node-b")
	_, err := a.Mount(ctx, "db", "c1") // mounted when it dies: the replica may lack what was written since
	require.NoError(t, err)
	kill(t, p, "node-a", la)

	_, err = b.Mount(ctx, "db", "c2")
	require.ErrorIs(t, err, ErrReplicaBehind)
	assert.Contains(t, err.Error(), `its freshest replica, on node "node-b"`)
	assert.Contains(t, err.Error(), "drayage volume promote db --to node-b --accept-loss")

	res, err := ms[2].Promote(ctx, "db", "node-b", true)
	require.NoError(t, err)
	assert.Equal(t, PromoteResult{Volume: "db", From: "node-a", To: "node-b", Epoch: 2}, res)
	_, err = b.Mount(ctx, "db", "c2") // the daemon's watch of the records has node-b take it over at once; a Mount does too
	require.NoError(t, err)
	rec, err := b.disk.Load("db")
	require.NoError(t, err)
	assert.False(t, rec.Replica())
	assert.Equal(t, uint64(2), rec.Epoch)
}

// Two nodes that promote at once: one promotion wins, the other Mount goes on from it.
func TestTwoNodesRacingToPromoteMakeOnePromotion(t *testing.T) {
	ctx := context.Background()
	ms, fs, p, la := failoverNodes(t)
	a := ms[0]
	require.NoError(t, a.Create(ctx, "db", map[string]string{"replicas": "3"}))
	replicasAt(t, fs[0].reg, "db", 1, "node-b", "node-c")
	kill(t, p, "node-a", la)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := 1; i < 3; i++ {
		wg.Go(func() { _, errs[i] = ms[i].Promote(ctx, "db", "", false) })
	}
	wg.Wait()
	ok := 0
	for _, err := range errs[1:] {
		if err == nil {
			ok++
		}
	}
	assert.GreaterOrEqual(t, ok, 1)
	e, err := fs[0].reg.Get(ctx, "db")
	require.NoError(t, err)
	assert.Equal(t, uint64(2), e.Volume.Epoch, "one promotion")
	pr, err := fs[0].reg.PromotionAt(ctx, "db", 1)
	require.NoError(t, err)
	require.NotNil(t, pr)
	assert.Equal(t, e.Volume.Owner, pr.To)
}

// An owner counts the replicas a volume keeps: on live nodes, or on nodes down for less
// than DRAYAGE_REPLICA_REPLACE_AFTER, at its epoch. One short, with a live node free to
// hold one, is healed by a sync.
func TestAVolumeShortOfReplicasIsHealedOnlyWhenANodeCanHoldOne(t *testing.T) {
	m := NewManager(Config{Node: "node-a", ReplicaReplaceAfter: time.Minute})
	m.SetPuller(&fakePuller{managers: map[string]*Manager{}, down: map[string]time.Time{}})
	rec := localstore.Record{Name: "db", Epoch: 2, Options: map[string]string{"replicas": "3"}}
	alive := func(n string) Peer { return Peer{Name: n, Alive: true, LastSeen: time.Now()} }
	downFor := func(n string, d time.Duration) Peer { return Peer{Name: n, LastSeen: time.Now().Add(-d)} }
	at := func(n string, epoch uint64) cluster.Replica {
		return cluster.Replica{Node: n, Epoch: epoch, Synced: time.Now()}
	}
	// A former owner that kept its copy as a replica after a failover records it at the
	// new epoch, never synced.
	kept := func(n string, epoch uint64) cluster.Replica { return cluster.Replica{Node: n, Epoch: epoch} }
	for name, tc := range map[string]struct {
		rps   []cluster.Replica
		peers []Peer
		want  bool
	}{
		"two replicas, both up":                {[]cluster.Replica{at("b", 2), at("c", 2)}, []Peer{alive("b"), alive("c"), alive("d")}, false},
		"one, another node free":               {[]cluster.Replica{at("b", 2)}, []Peer{alive("b"), alive("c")}, true},
		"one, no other node":                   {[]cluster.Replica{at("b", 2)}, []Peer{alive("b")}, false},
		"one of an older epoch, to bring up":   {[]cluster.Replica{at("b", 2), at("c", 1)}, []Peer{alive("b"), alive("c")}, true},
		"a node down a moment keeps its place": {[]cluster.Replica{at("b", 2), at("c", 2)}, []Peer{alive("b"), downFor("c", time.Second), alive("d")}, false},
		"a node down long is replaced":         {[]cluster.Replica{at("b", 2), at("c", 2)}, []Peer{alive("b"), downFor("c", time.Hour), alive("d")}, true},
		"one kept, never synced, to bring up":  {[]cluster.Replica{at("b", 2), kept("c", 2)}, []Peer{alive("b"), alive("c")}, true},
	} {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, tc.want, m.missingReplicas(rec, tc.rps, tc.peers))
		})
	}
}

func TestADivergedCopysNameSaysWhichVolumeItCameFrom(t *testing.T) {
	name := DivergedName("pg-data", 7, "node-a")
	assert.Equal(t, "pg-data-diverged-7-node-a", name)
	from, ok := DivergedFrom(name)
	assert.True(t, ok)
	assert.Equal(t, "pg-data", from)
	_, ok = DivergedFrom("pg-data")
	assert.False(t, ok)
	require.NoError(t, ValidateName(name), "a valid volume name")
}

// A diverged copy never takes a name the store knows, nor one too long for a volume: it
// stays where it is instead, unused.
func TestADivergedCopyTakesOnlyAFreeValidName(t *testing.T) {
	ctx := context.Background()
	ms, _, _, _ := failoverNodes(t)
	b := ms[1]
	require.NoError(t, b.Create(ctx, "db-diverged-1-node-a", nil))
	taken, why := ms[0].divergedNameTaken(ctx, "db-diverged-1-node-a")
	assert.True(t, taken)
	assert.Equal(t, "a volume of that name exists", why)
	taken, _ = ms[0].divergedNameTaken(ctx, DivergedName(strings.Repeat("x", 120), 1, "node-a"))
	assert.True(t, taken, "too long")
	taken, _ = ms[0].divergedNameTaken(ctx, "db-diverged-2-node-a")
	assert.False(t, taken)
}
