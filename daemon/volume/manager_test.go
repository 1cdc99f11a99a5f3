package volume

import (
	"context"
	"errors"
	"log/slog"
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
	"github.com/drayage/drayage/daemon/metrics"
	"github.com/drayage/drayage/daemon/mount/mounttest"
)

// fixture is one node: its state dir, mount dir and mounter, over a cluster registry.
type fixture struct {
	node           string
	root, mountDir string
	mounter        *mounttest.Fake
	reg            *cluster.Registry
	metrics        *metrics.Metrics // nil: none
	propagated     bool             // the mount dir is a managed plugin's propagated mount
	// peers, if set, connects the managers this fixture starts to the other nodes'.
	peers *fakePuller
	// seeder, if set, fills the volumes created with -o from.
	seeder Seeder
}

func newFixture(t *testing.T) *fixture {
	return newNode(t, "node-a", clustertest.Registry(t))
}

// newNode makes another node sharing reg.
func newNode(t *testing.T, node string, reg *cluster.Registry) *fixture {
	dir := t.TempDir()
	return &fixture{node: node, root: filepath.Join(dir, "state"), mountDir: filepath.Join(dir, "mnt"), mounter: mounttest.New(), reg: reg}
}

func (f *fixture) manager(t *testing.T) *Manager {
	m := NewManager(Config{Node: f.node, Root: f.root, MountDir: f.mountDir, Mounter: f.mounter, Logger: slog.New(slog.DiscardHandler),
		Metrics: f.metrics, MountPropagated: f.propagated, Seeder: f.seeder})
	t.Cleanup(m.Close)
	return m
}

// start makes and initialises a manager over the fixture's state, as a daemon start does,
// with a lease of its own.
func (f *fixture) start(t *testing.T) *Manager {
	m := f.manager(t)
	if f.peers != nil {
		f.peers.add(f.node, m)
		m.SetPuller(f.peers)
	}
	require.NoError(t, m.Init(context.Background(), f.reg, clustertest.Lease(t)))
	return m
}

// connect makes the managers the fixtures start reach each other, as over a network.
func connect(fs ...*fixture) *fakePuller {
	p := &fakePuller{managers: map[string]*Manager{}, down: map[string]time.Time{}}
	for _, f := range fs {
		f.peers = p
	}
	return p
}

func TestCreateMakesAnEmptyVolumeWithRequestedOwnerAndMode(t *testing.T) {
	ctx := context.Background()
	m := newFixture(t).start(t)
	require.NoError(t, m.Create(ctx, "v1", map[string]string{"mode": "1777", "uid": "1000", "gid": "1001"}))

	info, err := m.Get(ctx, "v1")
	require.NoError(t, err)
	assert.Equal(t, "node-a", info.Node)
	assert.Equal(t, StateIdle, info.State)
	assert.Equal(t, int64(0), info.Size)
	assert.Equal(t, map[string]string{"mode": "1777", "uid": "1000", "gid": "1001"}, info.Options)

	st, err := os.Stat(filepath.Join(m.cfg.Root, "volumes", "v1", "data"))
	require.NoError(t, err)
	assert.Equal(t, os.ModeDir|os.ModeSticky|0o777, st.Mode())
}

func TestAVolumeIsMountedNosuidNodevUnlessItAllowsPrivilegedContent(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	m := f.start(t)
	require.NoError(t, m.Create(ctx, "plain", nil))
	require.NoError(t, m.Create(ctx, "priv", map[string]string{"allow-privileged": "1"}))
	for name, privileged := range map[string]bool{"plain": false, "priv": true} {
		mp, err := m.Mount(ctx, name, "c1")
		require.NoError(t, err)
		assert.Equal(t, privileged, f.mounter.Options(mp).Privileged, name)
	}
	info, err := m.Get(ctx, "priv")
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"allow-privileged": "true"}, info.Options, "the option in its canonical form")
	err = m.Create(ctx, "bad", map[string]string{"allow-privileged": "yes"})
	require.ErrorIs(t, err, ErrInvalidOption)
	assert.Contains(t, err.Error(), `allow-privileged="yes": want true or false`)
}

func TestCreateAgainWithSameOptionsSucceedsAndWithOthersFails(t *testing.T) {
	ctx := context.Background()
	m := newFixture(t).start(t)
	require.NoError(t, m.Create(ctx, "v1", map[string]string{"mode": "755"}))
	require.NoError(t, m.Create(ctx, "v1", map[string]string{"mode": "0755"}), "same mode, other spelling")
	require.NoError(t, m.Create(ctx, "v1", nil), "0755 is the default")

	err := m.Create(ctx, "v1", map[string]string{"mode": "0700"})
	require.ErrorIs(t, err, ErrOptionsConflict)
	assert.Contains(t, err.Error(), `volume "v1" on node "node-a"`)
	assert.Contains(t, err.Error(), "mode=0755")
	assert.Contains(t, err.Error(), "mode=0700")
}

func TestCreateRefusesUnknownOptionAndListsValidOnes(t *testing.T) {
	m := newFixture(t).start(t)
	err := m.Create(context.Background(), "v1", map[string]string{"size": "1G"})
	require.ErrorIs(t, err, ErrInvalidOption)
	assert.Contains(t, err.Error(), `"size"`)
	assert.Contains(t, err.Error(), "gid, max-lag, mode, replica-nodes, replicas, sha256, sync-interval, uid")

	err = m.Create(context.Background(), "v1", map[string]string{"mode": "999"})
	require.ErrorIs(t, err, ErrInvalidOption)
	assert.Contains(t, err.Error(), "octal")
	_, err = m.Get(context.Background(), "v1")
	require.ErrorIs(t, err, ErrNotFound, "a refused create leaves nothing behind")
}

func TestBadNamesAreRefusedBeforeTouchingDisk(t *testing.T) {
	f := newFixture(t)
	m := f.start(t)
	ctx := context.Background()
	for _, name := range []string{"", "../x", "/x", "a/b", ".hidden", "-x", "a\x00b", "x y", strings.Repeat("a", 129)} {
		err := m.Create(ctx, name, nil)
		require.ErrorIs(t, err, ErrInvalidName, "name %q", name)
		assert.Contains(t, err.Error(), `node "node-a"`)
		_, err = m.Mount(ctx, name, "id")
		require.ErrorIs(t, err, ErrInvalidName, "name %q", name)
	}
	entries, err := os.ReadDir(filepath.Join(f.root, "volumes"))
	require.NoError(t, err)
	assert.Empty(t, entries)
	require.NoError(t, m.Create(ctx, strings.Repeat("a", 128), nil), "128 characters is allowed")
}

func TestMountCountsReferencesPerID(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	m := f.start(t)
	require.NoError(t, m.Create(ctx, "v1", nil))

	// docker run mounts an ID twice; docker cp mounts again with the same ID.
	mp, err := m.Mount(ctx, "v1", "c1")
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(f.mountDir, "v1"), mp)
	_, err = m.Mount(ctx, "v1", "c1")
	require.NoError(t, err)
	_, err = m.Mount(ctx, "v1", "c2")
	require.NoError(t, err)
	assert.Equal(t, 1, f.mounter.Count(), "one bind mount however many references")

	info, err := m.Get(ctx, "v1")
	require.NoError(t, err)
	assert.Equal(t, 3, info.Mounts)
	assert.Equal(t, StateMounted, info.State)
	assert.Equal(t, mp, info.Mountpoint)

	require.NoError(t, m.Unmount(ctx, "v1", "c1"))
	require.NoError(t, m.Unmount(ctx, "v1", "c2"))
	path, err := m.Path(ctx, "v1")
	require.NoError(t, err)
	assert.Equal(t, mp, path, "still mounted once by c1")
	assert.Equal(t, 1, f.mounter.Count())

	require.NoError(t, m.Unmount(ctx, "v1", "c1"))
	assert.Equal(t, 0, f.mounter.Count())
	path, err = m.Path(ctx, "v1")
	require.NoError(t, err)
	assert.Empty(t, path)
	assert.NoDirExists(t, mp)
}

func TestUnmountOfUnknownIDOrVolumeIsHarmless(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	m := f.start(t)
	require.NoError(t, m.Create(ctx, "v1", nil))
	_, err := m.Mount(ctx, "v1", "c1")
	require.NoError(t, err)

	require.NoError(t, m.Unmount(ctx, "v1", "never-mounted"))
	require.NoError(t, m.Unmount(ctx, "nope", "c1"))
	info, err := m.Get(ctx, "v1")
	require.NoError(t, err)
	assert.Equal(t, 1, info.Mounts)
	assert.Equal(t, 1, f.mounter.Count())
}

func TestFailedMountLeavesNothingHalfDone(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	m := f.start(t)
	require.NoError(t, m.Create(ctx, "v1", nil))
	f.mounter.Fail(errors.New("operation not permitted"))

	_, err := m.Mount(ctx, "v1", "c1")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `volume "v1" on node "node-a"`)
	assert.Contains(t, err.Error(), "operation not permitted")

	info, err := m.Get(ctx, "v1")
	require.NoError(t, err)
	assert.Equal(t, 0, info.Mounts)
	assert.Equal(t, StateIdle, info.State)
	assert.NoDirExists(t, filepath.Join(f.mountDir, "v1"))

	f.mounter.Fail(nil)
	_, err = m.Mount(ctx, "v1", "c1")
	require.NoError(t, err, "a retry after the cause is gone works")
}

func TestMountOfMissingVolumeSaysHowToCreateIt(t *testing.T) {
	m := newFixture(t).start(t)
	_, err := m.Mount(context.Background(), "ghost", "c1")
	require.ErrorIs(t, err, ErrNotFound)
	assert.Contains(t, err.Error(), `volume "ghost" on node "node-a"`)
	assert.Contains(t, err.Error(), "docker volume create --driver drayage ghost")
}

func TestRemoveRefusesMountedVolumeAndDeletesDataOtherwise(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	m := f.start(t)
	require.NoError(t, m.Create(ctx, "v1", nil))
	data := filepath.Join(f.root, "volumes", "v1", "data")
	require.NoError(t, os.WriteFile(filepath.Join(data, "f"), []byte("hello"), 0o644))
	_, err := m.Mount(ctx, "v1", "c1")
	require.NoError(t, err)
	_, err = m.Mount(ctx, "v1", "c2")
	require.NoError(t, err)

	err = m.Remove(ctx, "v1")
	require.ErrorIs(t, err, ErrInUse)
	assert.Equal(t, `volume "v1" is mounted by 2 containers on node "node-a": volume in use; stop and remove the containers using it, then remove the volume`, err.Error())
	assert.FileExists(t, filepath.Join(data, "f"))

	require.NoError(t, m.Unmount(ctx, "v1", "c1"))
	require.NoError(t, m.Unmount(ctx, "v1", "c2"))
	require.NoError(t, m.Remove(ctx, "v1"))
	assert.NoDirExists(t, filepath.Join(f.root, "volumes", "v1"))
	_, err = m.Get(ctx, "v1")
	require.ErrorIs(t, err, ErrNotFound)
	require.NoError(t, m.Remove(ctx, "v1"), "removing what is gone is not an error")
}

func TestGetMeasuresSizeAndListDoesNot(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	m := f.start(t)
	require.NoError(t, m.Create(ctx, "b", nil))
	require.NoError(t, m.Create(ctx, "a", nil))
	data := filepath.Join(f.root, "volumes", "a", "data")
	require.NoError(t, os.MkdirAll(filepath.Join(data, "sub"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(data, "sub", "f"), make([]byte, 1000), 0o644))
	require.NoError(t, os.Symlink("sub/f", filepath.Join(data, "link")))

	info, err := m.Get(ctx, "a")
	require.NoError(t, err)
	assert.Equal(t, int64(1000), info.Size)

	list, err := m.List(ctx)
	require.NoError(t, err)
	require.Len(t, list, 2)
	assert.Equal(t, "a", list[0].Name)
	assert.Equal(t, "b", list[1].Name)
	assert.Equal(t, int64(0), list[0].Size, "the size recorded at its creation: List does not measure")
}

func TestRestartRestoresMountsAndKeepsVolumes(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	m := f.start(t)
	require.NoError(t, m.Create(ctx, "busy", map[string]string{"uid": "7"}))
	require.NoError(t, m.Create(ctx, "quiet", nil))
	_, err := m.Mount(ctx, "busy", "c1")
	require.NoError(t, err)
	_, err = m.Mount(ctx, "busy", "c1")
	require.NoError(t, err)

	// The daemon dies: its mounts vanish with its mount namespace (managed plugin
	// disable), and a stale mountpoint is left for a volume nobody mounts.
	f.mounter = mounttest.New()
	require.NoError(t, os.MkdirAll(filepath.Join(f.mountDir, "quiet"), 0o755))

	m2 := f.start(t)
	list, err := m2.List(ctx)
	require.NoError(t, err)
	require.Len(t, list, 2)
	busy, err := m2.Get(ctx, "busy")
	require.NoError(t, err)
	assert.Equal(t, 2, busy.Mounts)
	assert.Equal(t, map[string]string{"uid": "7"}, busy.Options)
	ok, err := f.mounter.Mounted(filepath.Join(f.mountDir, "busy"))
	require.NoError(t, err)
	assert.True(t, ok, "the bind mount of a volume in use is restored")
	assert.NoDirExists(t, filepath.Join(f.mountDir, "quiet"), "stale mountpoints are swept")

	// The running container's unmounts still balance after the restart.
	require.NoError(t, m2.Unmount(ctx, "busy", "c1"))
	require.NoError(t, m2.Unmount(ctx, "busy", "c1"))
	assert.Equal(t, 0, f.mounter.Count())
	require.NoError(t, m2.Remove(ctx, "busy"))
}

func TestCallsBeforeInitWaitForItWithinTheirDeadline(t *testing.T) {
	f := newFixture(t)
	m := f.manager(t)
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := m.List(short)
	require.ErrorIs(t, err, ErrNotReady)
	assert.Contains(t, err.Error(), `node "node-a"`)
	assert.Contains(t, err.Error(), "retry")
	require.ErrorIs(t, m.Create(short, "v1", nil), ErrNotReady)

	// A Get that arrives during start-up waits and answers, instead of failing (which
	// would make the engine forget the volume).
	got := make(chan error, 1)
	go func() {
		_, err := m.Get(context.Background(), "v1")
		got <- err
	}()
	require.NoError(t, m.Init(context.Background(), f.reg, clustertest.Lease(t)))
	require.ErrorIs(t, <-got, ErrNotFound, "the answer after start-up, not ErrNotReady")
}

func TestGetDescribesAnUnreadableVolumeInsteadOfFailing(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	m := f.start(t)
	require.NoError(t, m.Create(ctx, "v1", nil))
	require.NoError(t, os.WriteFile(filepath.Join(f.root, "volumes", "v1", "volume.json"), []byte("{garbage"), 0o600))

	info, err := m.Get(ctx, "v1")
	require.NoError(t, err)
	assert.Equal(t, StateUnreadable, info.State)
	assert.Contains(t, info.Problem, `volume "v1"`)
	_, err = m.Mount(ctx, "v1", "c1")
	require.Error(t, err, "but it can't be mounted")
}

func TestConcurrentMountsAndUnmountsBalance(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	m := f.start(t)
	require.NoError(t, m.Create(ctx, "v1", nil))
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := string(rune('a' + i%5))
			_, err := m.Mount(ctx, "v1", id)
			assert.NoError(t, err)
			assert.NoError(t, m.Unmount(ctx, "v1", id))
		}()
	}
	wg.Wait()
	info, err := m.Get(ctx, "v1")
	require.NoError(t, err)
	assert.Equal(t, 0, info.Mounts)
	assert.Equal(t, 0, f.mounter.Count())
}

// ListNames, the engine's List, names what List describes: every volume of the cluster
// but those being removed, with the mountpoint of those mounted here.
func TestListNamesListsNamesAndMountpoints(t *testing.T) {
	ctx := context.Background()
	fa := newFixture(t)
	a := fa.start(t)
	b := newNode(t, "node-b", fa.reg).start(t)
	for _, name := range []string{"v1", "v2", "v3"} {
		require.NoError(t, a.Create(ctx, name, nil))
	}
	require.NoError(t, b.Create(ctx, "elsewhere", nil))
	mp, err := a.Mount(ctx, "v1", "c1")
	require.NoError(t, err)
	_, err = fa.reg.MarkRemoving(ctx, "v3", cluster.RemoveOptions{By: "node-a"})
	require.NoError(t, err)

	full, err := a.List(ctx)
	require.NoError(t, err)
	var want []Info
	for _, info := range full {
		want = append(want, Info{Name: info.Name, Mountpoint: info.Mountpoint})
	}
	names, err := a.ListNames(ctx)
	require.NoError(t, err)
	assert.Equal(t, []Info{{Name: "elsewhere"}, {Name: "v1", Mountpoint: mp}, {Name: "v2"}}, names)
	assert.Equal(t, want, names)
}
