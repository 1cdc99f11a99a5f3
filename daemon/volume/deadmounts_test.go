package volume

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/daemon/mount"
	"github.com/drayage/drayage/daemon/mount/mounttest"
)

// fastDeadMounts shortens the watch of restored mounts for a test.
func fastDeadMounts(t *testing.T) {
	check, grace, recheck := deadMountCheck, deadMountGrace, deadMountRecheck
	deadMountCheck, deadMountGrace, deadMountRecheck = 10*time.Millisecond, 100*time.Millisecond, 20*time.Millisecond
	t.Cleanup(func() { deadMountCheck, deadMountGrace, deadMountRecheck = check, grace, recheck })
}

// The engine crashed with the node: no Unmount comes for the containers that died. A
// mount restored at start that no container uses is released, and its volume moves; one
// a container uses, or whose use can't be told, stays.
func TestMountsOfContainersThatDiedWithTheEngineAreReleased(t *testing.T) {
	fastDeadMounts(t)
	ctx := context.Background()
	a := newFixture(t)
	b := newNode(t, "node-b", a.reg)
	connect(a, b)
	m := a.start(t)
	b.start(t)
	for _, v := range []string{"dead", "restarted", "alive", "unknown"} {
		require.NoError(t, m.Create(ctx, v, nil))
		_, err := m.Mount(ctx, v, "c1")
		require.NoError(t, err)
	}
	_, err := m.Mount(ctx, "dead", "c1") // mounted twice by one container
	require.NoError(t, err)
	m.Close()

	a.mounter = mounttest.New()
	mp := func(v string) string { return filepath.Join(a.mountDir, v) }
	a.mounter.Use(mp("dead"), false, nil)
	a.mounter.Use(mp("restarted"), false, nil)
	a.mounter.Use(mp("alive"), true, nil)
	a.mounter.Use(mp("unknown"), false, mount.ErrUseUnknown)
	m2 := a.start(t)
	// A container with a restart policy, started again by the engine: a new mount ID.
	_, err = m2.Mount(ctx, "restarted", "c2")
	require.NoError(t, err)

	mounts := func(v string) int {
		info, err := m2.Get(ctx, v)
		require.NoError(t, err)
		return info.Mounts
	}
	require.Eventually(t, func() bool { return mounts("dead") == 0 && mounts("restarted") == 1 }, 10*time.Second, 10*time.Millisecond)
	bound, err := a.mounter.Mounted(mp("dead"))
	require.NoError(t, err)
	assert.False(t, bound, "the bind of a released volume is gone")
	_, err = b.start(t).Mount(ctx, "dead", "c9")
	require.NoError(t, err, "a released volume moves to another node")

	assert.Equal(t, 1, mounts("alive"), "a mount a container uses stays")
	assert.Equal(t, 1, mounts("unknown"), "a mount whose use can't be told stays")
	require.NoError(t, m2.Unmount(ctx, "restarted", "c2"))
	assert.Equal(t, 0, mounts("restarted"), "this run's mount ID is the engine's to unmount")

	// The container stops later, with the engine gone again: released once unused.
	a.mounter.Use(mp("alive"), false, nil)
	require.Eventually(t, func() bool { return mounts("alive") == 0 }, 10*time.Second, 10*time.Millisecond)
	assert.Equal(t, 1, mounts("unknown"))
}
