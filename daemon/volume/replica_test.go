package volume

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/cluster/clustertest"
	"github.com/drayage/drayage/progress"
)

// threeNodes starts node-a, node-b and node-c over one registry, reaching each other.
func threeNodes(t *testing.T) (ms [3]*Manager, fs [3]*fixture) {
	fs[0] = newFixture(t)
	fs[1] = newNode(t, "node-b", fs[0].reg)
	fs[2] = newNode(t, "node-c", fs[0].reg)
	connect(fs[0], fs[1], fs[2])
	for i, f := range fs {
		ms[i] = f.start(t)
	}
	return ms, fs
}

// replicasAt waits until the volume's replica records are those nodes', at epoch.
func replicasAt(t *testing.T, reg *cluster.Registry, name string, epoch uint64, nodes ...string) []cluster.Replica {
	t.Helper()
	var got []cluster.Replica
	require.Eventually(t, func() bool {
		reps, err := reg.Replicas(context.Background(), name)
		if err != nil || len(reps) != len(nodes) {
			return false
		}
		for i, rp := range reps {
			if rp.Node != nodes[i] || rp.Epoch != epoch {
				return false
			}
		}
		got = reps
		return true
	}, 10*time.Second, 20*time.Millisecond, "replicas of %s on %v at epoch %d", name, nodes, epoch)
	return got
}

func TestAReplicatedVolumeIsKeptOnItsReplicasAndUnmountSyncsItsLastWrites(t *testing.T) {
	ctx := context.Background()
	ms, fs := threeNodes(t)
	a := ms[0]
	require.NoError(t, a.Create(ctx, "db", map[string]string{"replicas": "3"}))
	replicasAt(t, fs[0].reg, "db", 1, "node-b", "node-c")

	_, err := a.Mount(ctx, "db", "c1")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(fs[0].root, "volumes", "db", "data", "log"), []byte("line 1\n"), 0o644))
	require.NoError(t, a.Unmount(ctx, "db", "c1"))
	// The Unmount answered once the replicas had the write.
	for _, f := range fs[1:] {
		b, err := os.ReadFile(filepath.Join(f.root, "volumes", "db", "data", "log"))
		require.NoError(t, err, f.node)
		assert.Equal(t, "line 1\n", string(b), f.node)
	}
	info, err := ms[1].Get(ctx, "db")
	require.NoError(t, err)
	assert.Equal(t, 3, info.Copies)
	require.Len(t, info.Replicas, 2)
	for _, ri := range info.Replicas {
		assert.Equal(t, ReplicaReady, ri.State, ri.Node)
		assert.Zero(t, ri.Lag, "synced since the volume's last container left")
	}

	// A sync that finds nothing new leaves the replica's tree as it is.
	dataB := filepath.Join(fs[1].root, "volumes", "db", "data")
	var before, after unix.Stat_t
	require.NoError(t, unix.Stat(dataB, &before))
	_, err = a.Mount(ctx, "db", "c2")
	require.NoError(t, err)
	require.NoError(t, a.Unmount(ctx, "db", "c2"))
	require.NoError(t, unix.Stat(dataB, &after))
	assert.Equal(t, before.Ino, after.Ino, "the same tree, not a copy swapped in")

	// A replica is never written over by a node that does not own the volume, nor
	// mounted as the volume.
	_, err = ms[1].SyncReplica(ctx, "db", "node-c", 1, SyncHow{Clean: true})
	require.ErrorIs(t, err, cluster.ErrStaleEpoch)
}

func TestAMoveToAReplicasNodeKeepsTheReplicaCount(t *testing.T) {
	ctx := context.Background()
	ms, fs := threeNodes(t)
	a, b := ms[0], ms[1]
	require.NoError(t, a.Create(ctx, "db", map[string]string{"replicas": "2", "replica-nodes": "node-b"}))
	replicasAt(t, fs[0].reg, "db", 1, "node-b")
	require.NoError(t, os.WriteFile(filepath.Join(fs[0].root, "volumes", "db", "data", "f"), []byte("after the sync"), 0o644))

	_, err := b.Mount(ctx, "db", "c1")
	require.NoError(t, err)
	got, err := os.ReadFile(filepath.Join(fs[1].root, "volumes", "db", "data", "f"))
	require.NoError(t, err)
	assert.Equal(t, "after the sync", string(got), "the move brought what the replica lacked")

	// The old owner keeps its copy as the replica (the volume pins its replicas to
	// node-b, the owner now: the copy left on node-a is the one replica).
	a.Reconcile(ctx)
	rec, err := a.disk.Load("db")
	require.NoError(t, err)
	assert.True(t, rec.Replica())
	reps := replicasAt(t, fs[0].reg, "db", 2, "node-a")
	assert.Equal(t, "node-a", reps[0].Node)
}

func TestAMountOnAReplicasNodeStopsItsSync(t *testing.T) {
	ctx := context.Background()
	ms, fs := threeNodes(t)
	a, b := ms[0], ms[1]
	require.NoError(t, a.Create(ctx, "db", map[string]string{"replicas": "2", "replica-nodes": "node-b"}))
	replicasAt(t, fs[0].reg, "db", 1, "node-b")
	// A sync that waits forever in the puller is cancelled by the Mount.
	holdSync(a, fs[0].peers, "db")
	mounted := make(chan error, 1)
	go func() { _, err := b.Mount(ctx, "db", "c1"); mounted <- err }()
	select {
	case err := <-mounted:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the Mount waited for the sync")
	}
	require.Eventually(t, func() bool { return a.lastSyncs("db")["node-b"] != nil }, 5*time.Second, 10*time.Millisecond,
		"the sync was stopped, not left running into the staging tree the move used")
}

func TestRemovingAReplicatedVolumeRemovesItsReplicas(t *testing.T) {
	ctx := context.Background()
	ms, fs := threeNodes(t)
	a := ms[0]
	require.NoError(t, a.Create(ctx, "db", map[string]string{"replicas": "3"}))
	replicasAt(t, fs[0].reg, "db", 1, "node-b", "node-c")
	require.NoError(t, a.Remove(ctx, "db"))
	for i, f := range fs[1:] {
		ms[i+1].Reconcile(ctx) // as the watch of the removal does
		assert.NoDirExists(t, filepath.Join(f.root, "volumes", "db"), f.node)
		assert.NoDirExists(t, filepath.Join(f.root, "staging", "db"), f.node)
	}
	all, err := fs[0].reg.AllReplicas(ctx)
	require.NoError(t, err)
	assert.Empty(t, all)
}

// fakeChanges is a change tracker whose answers the test sets.
type fakeChanges struct {
	mu      sync.Mutex
	changed map[string]bool
	// drifted is what the next check of each volume finds; checks counts them.
	drifted map[string]bool
	checks  int
}

func (f *fakeChanges) Take(name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.changed[name]
	delete(f.changed, name)
	return c
}

func (f *fakeChanges) Mark(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.changed[name] = true
}

func (f *fakeChanges) Pending(name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed[name]
}

func (f *fakeChanges) Forget() {}

func (f *fakeChanges) Drifted(_ context.Context, name, _ string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.checks++
	d := f.drifted[name]
	delete(f.drifted, name)
	return d, nil
}

func (f *fakeChanges) checked() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.checks
}

func (f *fakeChanges) drift(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.drifted[name] = true
}

// pulls counts the pulls of a volume the fake network served.
func (f *fakePuller) pulls(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, r := range f.requests {
		if r.Volume == name {
			n++
		}
	}
	return n
}

// trackedPair starts node-a, whose change tracker is the fake it returns (checkEvery set
// before its start: 0 leaves the default), and node-b.
func trackedPair(t *testing.T, checkEvery int) (a *Manager, fa *fixture, p *fakePuller, ch *fakeChanges) {
	fa = newFixture(t)
	fb := newNode(t, "node-b", fa.reg)
	p = connect(fa, fb)
	ch = &fakeChanges{changed: map[string]bool{}, drifted: map[string]bool{}}
	a = fa.manager(t)
	a.SetChanges(ch)
	if checkEvery > 0 {
		a.repl.checkEvery = checkEvery
	}
	p.add("node-a", a)
	a.SetPuller(p)
	require.NoError(t, a.Init(context.Background(), fa.reg, clustertest.Lease(t)))
	fb.start(t)
	return a, fa, p, ch
}

func TestAMountedVolumeThatDoesNotChangeCostsNoSync(t *testing.T) {
	ctx := context.Background()
	a, fa, p, ch := trackedPair(t, 0)
	require.NoError(t, a.Create(ctx, "db", map[string]string{"replicas": "2", "sync-interval": "1s"}))
	replicasAt(t, fa.reg, "db", 1, "node-b")
	_, err := a.Mount(ctx, "db", "c1")
	require.NoError(t, err)

	before := p.pulls("db")
	time.Sleep(3500 * time.Millisecond) // three intervals, nothing changed
	assert.Equal(t, before, p.pulls("db"), "an unchanged mounted volume is not synced")

	ch.Mark("db")
	require.Eventually(t, func() bool { return p.pulls("db") > before }, 3*time.Second, 20*time.Millisecond, "a change is synced within the interval")
	require.NoError(t, a.Unmount(ctx, "db", "c1"))
	require.Eventually(t, func() bool { return p.pulls("db") == before+2 }, 3*time.Second, 20*time.Millisecond,
		"the Unmount syncs whether or not the tracker saw a change")

	// It waits for that sync only if something was written since the last one.
	_, err = a.Mount(ctx, "db", "c2")
	require.NoError(t, err)
	ch.Mark("db")
	require.NoError(t, a.Unmount(ctx, "db", "c2"))
	assert.Equal(t, before+3, p.pulls("db"), "the Unmount answered once the replica had the change")
}

// Now and then the owner walks a mounted volume the change log saw no change of: if that
// finds nothing either, its replicas are confirmed current in the store, and nothing is
// synced; if it finds a change, the replicas sync.
func TestACheckOfAnUnchangedVolumeConfirmsItsReplicasWithoutASync(t *testing.T) {
	ctx := context.Background()
	a, fa, p, ch := trackedPair(t, 2)
	require.NoError(t, a.Create(ctx, "db", map[string]string{"replicas": "2", "sync-interval": "1s"}))
	replicasAt(t, fa.reg, "db", 1, "node-b")
	_, err := a.Mount(ctx, "db", "c1")
	require.NoError(t, err)
	ch.Mark("db")
	require.Eventually(t, func() bool { return p.pulls("db") == 2 }, 3*time.Second, 20*time.Millisecond, "the change is synced")

	lag := func() time.Duration {
		v, err := fa.reg.Get(ctx, "db")
		require.NoError(t, err)
		rps, err := fa.reg.Replicas(ctx, "db")
		require.NoError(t, err)
		require.Len(t, rps, 1)
		return rps[0].Lag(v.Volume, true, time.Now())
	}
	checks := ch.checked()
	require.Eventually(t, func() bool { return ch.checked() > checks }, 4*time.Second, 20*time.Millisecond, "a check within two intervals")
	require.Eventually(t, func() bool { return lag() < time.Second }, 2*time.Second, 20*time.Millisecond, "the check confirmed the replica")
	assert.Equal(t, 2, p.pulls("db"), "and synced nothing")

	ch.drift("db")
	require.Eventually(t, func() bool { return p.pulls("db") == 3 }, 4*time.Second, 20*time.Millisecond, "a check that finds a change syncs it")
	require.NoError(t, a.Unmount(ctx, "db", "c1"))
}

// An Unmount while a sync runs waits for the sync after it, which starts as soon as the
// running one ends.
func TestAnUnmountDuringASyncWaitsOnlyForTheNextSync(t *testing.T) {
	ctx := context.Background()
	ms, fs := threeNodes(t)
	a := ms[0]
	require.NoError(t, a.Create(ctx, "db", map[string]string{"replicas": "2", "replica-nodes": "node-b"}))
	replicasAt(t, fs[0].reg, "db", 1, "node-b")
	g := holdSync(a, fs[0].peers, "db") // a sync of the idle volume runs (none is due after it)
	_, err := a.Mount(ctx, "db", "c1")
	require.NoError(t, err)
	unmounted := make(chan error, 1)
	go func() { unmounted <- a.Unmount(ctx, "db", "c1") }()
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	g.open <- nil // the running sync ends
	require.NoError(t, <-unmounted)
	assert.Less(t, time.Since(start), 5*time.Second, "the Unmount's sync started once the running one ended")
}

// holdSync starts a sync of volume name on a that waits in the puller p until the gate
// it returns opens; later pulls pass.
func holdSync(a *Manager, p *fakePuller, name string) *gate {
	g := newGate(progress.Counts{})
	p.mu.Lock()
	p.gate = g
	p.mu.Unlock()
	a.scheduleSync(name, time.Now(), false)
	<-g.started
	p.mu.Lock()
	p.gate = nil
	p.mu.Unlock()
	return g
}
