package transfer

import (
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/drayage/drayage/daemon/metrics"
	"github.com/drayage/drayage/daemon/metrics/metricstest"
)

// A write through a shared memory map makes no change event: the check finds it, and
// only a check that finds nothing says the volume is as its record says.
func TestADriftCheckFindsAWriteTheChangeLogDidNotSee(t *testing.T) {
	dir := t.TempDir()
	for i := range 50 {
		require.NoError(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%02d", i)), []byte("0123456789"), 0o644))
	}
	log := &fakeLog{id: "run-1"}
	m := metrics.New(metrics.Options{Node: "node-a", Version: "test"})
	drifted := func() bool {
		t.Helper()
		d, err := Drifted(t.Context(), dir, "v", log, m)
		require.NoError(t, err)
		return d
	}
	assert.True(t, drifted(), "no record: it can't tell")
	assert.False(t, drifted(), "the walk became the record, and nothing changed")
	assert.Equal(t, 2.0, metricstest.Gather(t, m.Registry()).Value("drayage_tree_reads_total", "how", metrics.TreeChecked))

	time.Sleep(10 * time.Millisecond) // a new modification time
	f, err := os.OpenFile(filepath.Join(dir, "f07"), os.O_RDWR, 0)
	require.NoError(t, err)
	mem, err := unix.Mmap(int(f.Fd()), 0, 10, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	require.NoError(t, err)
	mem[3] = 'x'
	require.NoError(t, unix.Munmap(mem))
	require.NoError(t, f.Close())
	assert.True(t, drifted(), "a write through a memory map")
	assert.False(t, drifted(), "the walk after it is the record")

	log.changed("f09")
	assert.True(t, drifted(), "a change the log saw since the record")
	assert.False(t, drifted())

	require.NoError(t, os.Link(filepath.Join(dir, "f01"), filepath.Join(dir, "link")))
	assert.True(t, drifted(), "a tree with hard links keeps no record")
	assert.True(t, drifted(), "so it can never tell")
}

// TreeRoot is the root hash a pull of the tree verifies: what a former owner compares
// with the root of the replica promoted in its place.
func TestTreeRootIsTheRootAPullVerifies(t *testing.T) {
	ids := testIdentities(t, "node-a", "node-b")
	src := fidelityTree(t)
	ctl := serveVolume(t, ids["node-a"], src)
	res, err := Pull(t.Context(), PullOptions{Identity: ids["node-b"], From: "node-a", Control: ctl, Volume: "v", Epoch: 2,
		Staging: filepath.Join(t.TempDir(), "staging"), Sink: SinkOptions{AllowPrivileged: true}})
	require.NoError(t, err)
	root, err := TreeRoot(t.Context(), src)
	require.NoError(t, err)
	assert.Equal(t, hex.EncodeToString(res.RootHash[:]), root)

	require.NoError(t, os.WriteFile(filepath.Join(src, "more"), []byte("written after"), 0o644))
	again, err := TreeRoot(t.Context(), src)
	require.NoError(t, err)
	assert.NotEqual(t, root, again, "a write changes it")
}
