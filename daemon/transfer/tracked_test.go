package transfer

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/daemon/metrics"
	"github.com/drayage/drayage/daemon/metrics/metricstest"
)

// fakeLog is a change log the test writes: the paths it changed, one position each.
type fakeLog struct {
	mu    sync.Mutex
	id    string
	paths []string // paths[i] changed at position i+1
}

func (l *fakeLog) Position() (string, uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.id, uint64(len(l.paths))
}

func (l *fakeLog) Since(_, log string, seq uint64) ([]string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if log != l.id || seq > uint64(len(l.paths)) {
		return nil, false
	}
	return append([]string(nil), l.paths[seq:]...), true
}

func (l *fakeLog) changed(p ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.paths = append(l.paths, p...)
}

// A replica's syncs of a volume whose change log the sender keeps read only what
// changed, on both ends, and still end with the replica equal to the volume.
func TestATrackedSyncReadsOnlyWhatChangedAndMakesTheSameTree(t *testing.T) {
	ids := testIdentities(t, "node-a", "node-b")
	src := t.TempDir()
	for i := range 500 {
		d := filepath.Join(src, fmt.Sprintf("d%02d", i%20))
		require.NoError(t, os.MkdirAll(d, 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(d, fmt.Sprintf("f%03d", i)), []byte(fmt.Sprint(i)), 0o644))
	}
	log := &fakeLog{id: "run-1"}
	m := metrics.New(metrics.Options{Node: "node-a", Version: "test"})
	ctl := serveVolume(t, ids["node-a"], src, func(s *Server) { s.Changes, s.Metrics = log, m })
	staging := filepath.Join(t.TempDir(), "staging")
	sync := func(walk bool) PullResult {
		t.Helper()
		res, err := Pull(t.Context(), PullOptions{Identity: ids["node-b"], From: "node-a", Control: ctl, Volume: "v", Epoch: 2,
			Staging: staging, Sink: SinkOptions{AllowPrivileged: true}, Live: true, Walk: walk, Verify: walk})
		require.NoError(t, err)
		return res
	}
	read := func(how string) float64 {
		return metricstest.Gather(t, m.Registry()).Value("drayage_tree_entries_read_total", "how", how)
	}
	same := func() {
		t.Helper()
		want, err := walkEntries(src)
		require.NoError(t, err)
		got, err := walkEntries(staging)
		require.NoError(t, err)
		require.Equal(t, want, got)
	}
	first := sync(false)
	same()
	assert.Equal(t, 521.0, read(metrics.TreeWalked), "the first sync walks: 500 files, 20 directories, the root")
	_, ok := loadTree(staging)
	assert.True(t, ok, "the finished staging tree has its record")

	require.NoError(t, os.WriteFile(filepath.Join(src, "d03", "f003"), []byte("changed"), 0o644))
	require.NoError(t, os.MkdirAll(filepath.Join(src, "new", "deep"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(src, "new", "deep", "g"), []byte("g"), 0o644))
	require.NoError(t, os.Remove(filepath.Join(src, "d04", "f004")))
	log.changed("d03/f003", "new", "d04/f004")
	time.Sleep(2 * racyWindow) // a file changed a moment before it is read is read again
	second := sync(false)
	same()
	assert.Equal(t, 521.0, read(metrics.TreeWalked), "no walk")
	assert.Equal(t, 9.0, read(metrics.TreeFromChanges), "the three paths, their two directories, the root, and the new tree's three entries")
	assert.Equal(t, 2, second.Files, "two files sent")
	assert.NotEqual(t, first.RootHash, second.RootHash)

	// A change the log missed (a write through a shared memory map) is found by the
	// walk made now and then.
	require.NoError(t, os.WriteFile(filepath.Join(src, "d05", "f005"), []byte("unlogged"), 0o644))
	sync(false)
	got, err := os.ReadFile(filepath.Join(staging, "d05", "f005"))
	require.NoError(t, err)
	assert.Equal(t, "5", string(got), "the log did not say: the sync trusted it")
	sync(true)
	same()
	walked := read(metrics.TreeWalked)
	require.NoError(t, os.WriteFile(filepath.Join(src, "d06", "f006"), []byte("logged"), 0o644))
	log.changed("d06/f006")
	time.Sleep(2 * racyWindow)
	sync(false)
	same()
	assert.Equal(t, walked, read(metrics.TreeWalked), "the walk left a record: the next sync starts from it")

	// Another run of the daemon: its log can't vouch for a record of the last one.
	log.mu.Lock()
	log.id = "run-2"
	log.mu.Unlock()
	walked = read(metrics.TreeWalked)
	sync(false)
	assert.Equal(t, walked+523, read(metrics.TreeWalked), "walked whole again")
	same()
}
