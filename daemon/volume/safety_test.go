package volume

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/cluster/clustertest"
	"github.com/drayage/drayage/daemon/localstore"
	"github.com/drayage/drayage/daemon/metrics"
	"github.com/drayage/drayage/daemon/metrics/metricstest"
	"github.com/drayage/drayage/progress"
)

// forge writes a volume record as anyone with access to the store could: no checks.
func forge(t *testing.T, reg *cluster.Registry, v cluster.Volume) {
	t.Helper()
	_, err := clustertest.Store(t).Txn(context.Background(), nil, []cluster.Op{cluster.Put(reg.Prefix()+"volumes/"+v.Name, mustJSON(t, v))})
	require.NoError(t, err)
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

// record reads a volume's record as it is in the store.
func record(t *testing.T, reg *cluster.Registry, name string) cluster.Volume {
	t.Helper()
	e, err := reg.Get(context.Background(), name)
	require.NoError(t, err)
	return e.Volume
}

// withData makes volume name on m with a file in it, and returns the file's path.
func withData(t *testing.T, m *Manager, f *fixture, name string) string {
	t.Helper()
	require.NoError(t, m.Create(context.Background(), name, nil))
	p := filepath.Join(f.root, "volumes", name, "data", "table")
	require.NoError(t, os.WriteFile(p, []byte("rows"), 0o644))
	return p
}

func refused(t *testing.T, reg *metrics.Metrics, reason string) float64 {
	t.Helper()
	return metricstest.Gather(t, reg.Registry()).Value("drayage_records_refused_total", "reason", reason)
}

// meteredNodes starts node-a, with metrics, and node-b, connected.
func meteredNodes(t *testing.T) (a *Manager, fa, fb *fixture) {
	t.Helper()
	fa = newFixture(t)
	fa.metrics = metrics.New(metrics.Options{Node: "node-a"})
	fb = newNode(t, "node-b", fa.reg)
	connect(fa, fb)
	a = fa.start(t)
	fb.start(t)
	return a, fa, fb
}

func TestAForgedOwnerChangeDeletesNothing(t *testing.T) {
	ctx := context.Background()
	a, fa, _ := meteredNodes(t)
	table := withData(t, a, fa, "db")
	same := withData(t, a, fa, "same")

	// Someone with the store's credentials says node-b holds db at a later epoch, and
	// "same" at its own epoch: node-b holds neither.
	v := record(t, fa.reg, "db")
	v.Owner, v.Epoch = "node-b", v.Epoch+1
	forge(t, fa.reg, v)
	w := record(t, fa.reg, "same")
	w.Owner = "node-b"
	forge(t, fa.reg, w)
	a.Reconcile(ctx)

	assert.FileExists(t, table, "node-b does not confirm it holds db: node-a keeps its copy")
	assert.FileExists(t, same, "a record naming another node at the copy's own epoch is a contradiction: kept")
	assert.Equal(t, 1.0, refused(t, fa.metrics, metrics.RecordUnconfirmed))
	assert.Equal(t, 1.0, refused(t, fa.metrics, metrics.RecordContradicts))
	_, err := a.Mount(ctx, "same", "c1")
	require.Error(t, err, "a copy the record contradicts is not used")
}

func TestAForgedRemovalDeletesNothing(t *testing.T) {
	ctx := context.Background()
	a, fa, fb := meteredNodes(t)
	for _, by := range []string{"", "node-b", "node-a"} {
		name := "db" + by
		table := withData(t, a, fa, name)
		v := record(t, fa.reg, name)
		v.Removing, v.RemovedBy = true, by
		forge(t, fa.reg, v)
		a.Reconcile(ctx)
		assert.FileExists(t, table, "a removal %q did not ask for is not obeyed", by)
	}
	assert.Equal(t, 3.0, refused(t, fa.metrics, metrics.RecordUnconfirmed))

	// A removal really asked for goes through, on the node that asked or elsewhere.
	b := fb.start(t)
	table := withData(t, a, fa, "gone")
	_, err := b.Delete(ctx, "gone", DeleteOptions{})
	require.NoError(t, err)
	a.Reconcile(ctx)
	assert.NoFileExists(t, table)
	_, err = fa.reg.Get(ctx, "gone")
	require.ErrorIs(t, err, cluster.ErrVolumeNotFound)
}

// A store restored from a snapshot taken before a move names the old owner at the old
// epoch. The node with the newest copy writes the record again; nothing is deleted.
func TestARolledBackRecordIsWrittenAgainByTheNewestCopy(t *testing.T) {
	ctx := context.Background()
	a, b, fa, fb, _ := twoNodes(t)
	fb.metrics = nil
	table := withData(t, a, fa, "db")
	snapshot := record(t, fa.reg, "db")
	_, err := b.Move(ctx, "db")
	require.NoError(t, err)
	a.Reconcile(ctx) // node-b confirms it holds epoch 2: node-a drops its copy
	assert.NoFileExists(t, table)
	moved := filepath.Join(fb.root, "volumes", "db", "data", "table")
	require.FileExists(t, moved)

	forge(t, fa.reg, snapshot) // the restore: node-a at epoch 1
	a.Reconcile(ctx)
	b.Reconcile(ctx)
	v := record(t, fa.reg, "db")
	assert.Equal(t, "node-b", v.Owner, "node-b's copy is newer than the record: it wrote the record again")
	assert.Equal(t, uint64(2), v.Epoch)
	assert.FileExists(t, moved, "nothing was deleted")
	_, err = b.Mount(ctx, "db", "c1")
	require.NoError(t, err)
}

// The same, with a removal in the snapshot: a record marked for removal at an epoch the
// owner's copy has left behind is not obeyed.
func TestARolledBackRemovalDeletesNothing(t *testing.T) {
	ctx := context.Background()
	a, b, fa, fb, _ := twoNodes(t)
	withData(t, a, fa, "db")
	_, err := b.Move(ctx, "db")
	require.NoError(t, err)
	_, err = a.Move(ctx, "db") // back at node-a, epoch 3
	require.NoError(t, err)
	old := record(t, fa.reg, "db")
	old.Epoch, old.Removing, old.RemovedBy = 1, true, "node-a"
	require.NoError(t, localstoreOf(t, fa).NoteRemoval("db", 1))
	forge(t, fa.reg, old)
	a.Reconcile(ctx)
	assert.FileExists(t, filepath.Join(fa.root, "volumes", "db", "data", "table"))
	v := record(t, fa.reg, "db")
	assert.False(t, v.Removing)
	assert.Equal(t, uint64(3), v.Epoch)
	_ = fb
}

func localstoreOf(t *testing.T, f *fixture) *localstore.Store {
	t.Helper()
	s, err := localstore.Open(f.root)
	require.NoError(t, err)
	return s
}

// lapsedWhileMounted makes node-a and node-b, with volume db on node-a mounted by one
// container, then lets node-a's lease lapse. It returns the managers, their network and
// the file in db.
func lapsedWhileMounted(t *testing.T) (a, b *Manager, p *fakePuller, table string) {
	t.Helper()
	ctx := context.Background()
	fa := newFixture(t)
	fb := newNode(t, "node-b", fa.reg)
	p = connect(fa, fb)
	la, err := clustertest.Store(t).Grant(ctx, 2*time.Second)
	require.NoError(t, err)
	a = fa.manager(t)
	p.add("node-a", a)
	a.SetPuller(p)
	require.NoError(t, a.Init(ctx, fa.reg, la))
	b = fb.start(t)
	table = withData(t, a, fa, "db")
	_, err = a.Mount(ctx, "db", "c1")
	require.NoError(t, err)
	require.NoError(t, la.Close(ctx))
	return a, b, p, table
}

// A node whose lease lapses (paused, cut off from the store) may still have containers
// writing: rm of its volume is refused until it comes back, or forced.
func TestRemoveOfAVolumeMountedOnANodeWhoseLeaseLapsedIsRefused(t *testing.T) {
	ctx := context.Background()
	a, b, p, table := lapsedWhileMounted(t)
	// node-a is cut off from the store: its container writes on, and gossip still sees it.
	for what, try := range map[string]func() error{
		"remove": func() error { _, err := b.Delete(ctx, "db", DeleteOptions{}); return err },
		"move":   func() error { _, err := b.Move(ctx, "db"); return err },
		"copy":   func() error { _, err := b.Copy(ctx, "db", "db2"); return err },
	} {
		err := try()
		require.ErrorIs(t, err, ErrInUse, what)
		assert.Contains(t, err.Error(), `cannot `+what+` volume "db": it is mounted on node "node-a" by 1 container, and node "node-a" has stopped renewing its lease`)
	}
	info, err := b.Get(ctx, "db")
	require.NoError(t, err)
	assert.Equal(t, StateMounted, info.State, "inspect shows it mounted still")
	assert.Contains(t, info.Problem, `mounted on node "node-a" by 1 container, but that node stopped renewing its lease`)
	// Down altogether: the removal says how to force it once node-a is known gone.
	p.down["node-a"] = time.Now()
	_, err = b.Delete(ctx, "db", DeleteOptions{})
	require.ErrorIs(t, err, ErrInUse)
	assert.Contains(t, err.Error(), "if node \"node-a\" is gone for good, remove it with 'drayage volume rm --force db'")
	assert.FileExists(t, table)

	// node-a comes back: its mount is claimed again, and still refuses the removal.
	delete(p.down, "node-a")
	a.SetLease(ctx, clustertest.Lease(t))
	_, err = b.Delete(ctx, "db", DeleteOptions{})
	require.ErrorIs(t, err, ErrInUse)
	assert.Contains(t, err.Error(), `mounted on node "node-a" by 1 container`)
	require.NoError(t, a.Unmount(ctx, "db", "c1"))
	_, err = b.Delete(ctx, "db", DeleteOptions{})
	require.NoError(t, err, "once it is unmounted, it goes")
}

func TestAForcedRemovalOfAVolumeOnANodeGoneForGood(t *testing.T) {
	ctx := context.Background()
	a, b, p, table := lapsedWhileMounted(t)
	p.down["node-a"] = time.Now()

	_, err := b.Delete(ctx, "db", DeleteOptions{Force: true})
	require.NoError(t, err)
	_, err = a.reg.Get(ctx, "db")
	require.ErrorIs(t, err, cluster.ErrVolumeNotFound, "the name is free")
	require.NoError(t, b.Create(ctx, "other", nil))

	// node-a was not gone for good after all: its data was never deleted, and its copy
	// registers the volume again rather than disappear.
	assert.FileExists(t, table)
	delete(p.down, "node-a")
	a.SetLease(ctx, clustertest.Lease(t))
	v := record(t, a.reg, "db")
	assert.Equal(t, "node-a", v.Owner)
}

// A move interrupted between installing the copy and committing it leaves the copy
// pending; it is the volume only if the commit happened.
func TestAPendingCopyIsConfirmedOrTakenBackByTheRecord(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	m := f.start(t)
	s := localstoreOf(t, f)
	for _, tc := range []struct {
		name      string
		owner     string
		epoch     uint64
		confirmed bool
	}{{"committed", "node-a", 2, true}, {"not-committed", "node-z", 1, false}} {
		_, _, err := f.reg.Create(ctx, cluster.Volume{Name: tc.name, Owner: tc.owner, Epoch: tc.epoch})
		require.NoError(t, err)
		staging := s.StagingDir(tc.name)
		require.NoError(t, os.MkdirAll(staging, 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(staging, "f"), []byte("pulled"), 0o644))
		require.NoError(t, s.Install(localstore.Record{Name: tc.name, Epoch: 2, Pending: true}, staging))
	}
	m.Reconcile(ctx)
	rec, err := s.Load("committed")
	require.NoError(t, err)
	assert.False(t, rec.Pending, "the record commits the move: the copy is the volume")
	_, err = s.Load("not-committed")
	require.ErrorIs(t, err, localstore.ErrNotExist, "no commit: the copy is not the volume")
	assert.FileExists(t, filepath.Join(s.StagingDir("not-committed"), "f"), "its files wait in staging for the next try")
}

func TestTheStagingOfAPullNotTriedAgainIsSweptAfterTheGracePeriod(t *testing.T) {
	ctx := context.Background()
	a, b, fa, fb, p := twoNodes(t)
	b.cfg.StagingGrace = time.Millisecond
	withData(t, a, fa, "db")
	s := localstoreOf(t, fb)
	abandoned := s.StagingDir("old")
	require.NoError(t, os.MkdirAll(abandoned, 0o755))

	// A pull runs (held at the gate) into staging of its own.
	g := newGate(progress.Counts{Bytes: 1, Total: 2})
	p.gate = g
	done := make(chan error, 1)
	go func() { _, err := b.Move(ctx, "db"); done <- err }()
	<-g.started
	require.NoError(t, os.MkdirAll(s.StagingDir("db"), 0o755))
	time.Sleep(5 * time.Millisecond)
	b.Reconcile(ctx)
	assert.NoDirExists(t, abandoned, "unused past the grace period: swept")
	assert.DirExists(t, s.StagingDir("db"), "a pull running now keeps its staging")
	g.open <- nil
	require.NoError(t, <-done)
}

// A pull never writes over a copy of this node's own that the record's owner has not
// confirmed superseding (say it runs a version that can't be asked yet): the record may
// be forged, and the copy may be the only one of its data.
func TestAPullNeverReplacesACopyItsOwnerDidNotConfirm(t *testing.T) {
	ctx := context.Background()
	a, b, fa, fb, p := twoNodes(t)
	table := withData(t, a, fa, "db")
	_, err := b.Move(ctx, "db") // node-a has not settled its old copy yet
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(fb.root, "volumes", "db", "data", "table"), []byte("newer rows"), 0o644))
	p.holdsFails = true
	_, err = a.Move(ctx, "db")
	require.ErrorIs(t, err, ErrConflict)
	assert.Contains(t, err.Error(), `node "node-a" holds its own copy of volume "db" (epoch 1), and the cluster record says node "node-b" holds it at epoch 2`)
	b1, err := os.ReadFile(table)
	require.NoError(t, err)
	assert.Equal(t, "rows", string(b1), "node-a's copy was not written over")

	p.holdsFails = false // node-b confirms: node-a drops its copy, and the move goes on
	_, err = a.Move(ctx, "db")
	require.NoError(t, err)
	b1, err = os.ReadFile(table)
	require.NoError(t, err)
	assert.Equal(t, "newer rows", string(b1))
}
