package changes

import (
	"encoding/binary"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// volumes makes dir/NAME/data for each name.
func volumes(t *testing.T, names ...string) string {
	dir := t.TempDir()
	for _, n := range names {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, n, "data", "sub"), 0o755))
	}
	return dir
}

// changedSoon reports whether Take(name) says changed within a second (events arrive
// asynchronously).
func changedSoon(tr *Tracker, name string) bool {
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if tr.Take(name) {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

func TestEveryKindOfChangeMarksItsVolumeAndNoOther(t *testing.T) {
	dir := volumes(t, "a", "b")
	tr, err := Start(dir, slog.New(slog.DiscardHandler))
	require.NoError(t, err, "the test machine's kernel must allow fanotify with directory reports")
	t.Cleanup(func() { tr.Close() })
	assert.True(t, tr.Take("a"), "nothing is vouched for before the first Take")
	assert.True(t, tr.Take("b"))
	assert.False(t, tr.Take("a"))

	data := filepath.Join(dir, "a", "data")
	f := filepath.Join(data, "sub", "f")
	for _, c := range []struct {
		what   string
		change func() error
	}{
		{"create", func() error { return os.WriteFile(f, []byte("1"), 0o644) }},
		{"write", func() error { return os.WriteFile(f, []byte("2"), 0o644) }},
		{"chmod", func() error { return os.Chmod(f, 0o600) }},
		{"xattr", func() error { return unix.Setxattr(f, "user.k", []byte("v"), 0) }},
		{"rename", func() error { return os.Rename(f, filepath.Join(data, "g")) }},
		{"mkdir", func() error { return os.Mkdir(filepath.Join(data, "d"), 0o755) }},
		{"remove", func() error { return os.Remove(filepath.Join(data, "g")) }},
		{"root's own", func() error { return os.Chmod(data, 0o700) }},
		{"a deep new dir", func() error { return os.MkdirAll(filepath.Join(data, "d", "e", "f"), 0o755) }},
	} {
		require.NoError(t, c.change(), c.what)
		assert.True(t, changedSoon(tr, "a"), "%s marks volume a", c.what)
		assert.False(t, tr.Take("b"), "%s in volume a leaves volume b alone", c.what)
	}

	// Outside any volume's data: nothing (once the last change's events are all in).
	time.Sleep(200 * time.Millisecond)
	tr.Take("a")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "a", "volume.json"), []byte("{}"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(t.TempDir(), "elsewhere"), []byte("x"), 0o644))
	assert.False(t, changedSoon(tr, "a"))

	// A failed sync marks it again.
	tr.Mark("b")
	assert.True(t, tr.Take("b"))
}

func TestLostEventsCountAsAChangeOfEveryVolume(t *testing.T) {
	tr := &Tracker{changed: map[string]bool{}, taken: map[string]uint64{}, cached: map[string]place{}, lost: 1, log: slog.New(slog.DiscardHandler),
		id: "t", seq: 1, paths: map[string]*pathLog{}}
	tr.Take("a")
	tr.Take("b")
	var ev [unix.FAN_EVENT_METADATA_LEN]byte
	binary.NativeEndian.PutUint32(ev[0:4], unix.FAN_EVENT_METADATA_LEN)
	binary.NativeEndian.PutUint16(ev[6:8], unix.FAN_EVENT_METADATA_LEN)
	binary.NativeEndian.PutUint64(ev[8:16], unix.FAN_Q_OVERFLOW)
	tr.handle(ev[:])
	assert.True(t, tr.Take("a"))
	assert.True(t, tr.Take("b"))
	assert.False(t, tr.Take("a"))
	_, ok := tr.Since("a", "t", 1)
	assert.False(t, ok, "no list of changed paths holds across lost events")
}

func TestVolumeOfAPathIsTheVolumeWhoseDataHoldsIt(t *testing.T) {
	for path, want := range map[string]string{
		"/s/volumes/db/data":         "db",
		"/s/volumes/db/data/x/y":     "db",
		"/s/volumes/db":              "",
		"/s/volumes/db/volume.json":  "",
		"/s/volumes/db/database":     "",
		"/s/staging/db/data":         "",
		"/s/volumes-other/db/data/x": "",
	} {
		assert.Equal(t, want, VolumeOf("/s/volumes", path), path)
	}
}

// A volume is made beside the volumes (in the state dir's tmp/) and renamed into place:
// the changes in it count from then on.
func TestADirectoryRenamedIntoAVolumeCountsAsTheVolumes(t *testing.T) {
	state := t.TempDir()
	dir := filepath.Join(state, "volumes")
	require.NoError(t, os.MkdirAll(filepath.Join(state, "tmp", "db.1", "data"), 0o755))
	require.NoError(t, os.MkdirAll(dir, 0o755))
	tr, err := Start(dir, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(func() { tr.Close() })
	tr.Take("db")
	require.NoError(t, os.WriteFile(filepath.Join(state, "tmp", "db.1", "data", "early"), nil, 0o644))
	assert.False(t, changedSoon(tr, "db"), "not a volume yet")
	require.NoError(t, os.Rename(filepath.Join(state, "tmp", "db.1"), filepath.Join(dir, "db")))
	time.Sleep(100 * time.Millisecond)
	tr.Take("db")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "db", "data", "late"), nil, 0o644))
	assert.True(t, changedSoon(tr, "db"))
}

// sinceSoon waits for path p of volume name to be among those changed since pos.
func sinceSoon(t *testing.T, tr *Tracker, name, log string, seq uint64, want ...string) {
	t.Helper()
	var got []string
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		var ok bool
		got, ok = tr.Since(name, log, seq)
		require.True(t, ok)
		if assert.ObjectsAreEqual(want, got) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	assert.Equal(t, want, got)
}

func TestSinceListsThePathsChangedAfterAPosition(t *testing.T) {
	dir := volumes(t, "a", "b")
	tr, err := Start(dir, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(func() { tr.Close() })
	data := filepath.Join(dir, "a", "data")
	log, start := tr.Position()

	require.NoError(t, os.WriteFile(filepath.Join(data, "sub", "f"), []byte("1"), 0o644))
	sinceSoon(t, tr, "a", log, start, "sub/f")
	time.Sleep(200 * time.Millisecond) // a write makes several events
	_, mid := tr.Position()
	require.NoError(t, os.Chmod(data, 0o700))
	require.NoError(t, os.MkdirAll(filepath.Join(data, "n", "m"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(data, "n", "m", "f"), nil, 0o644))
	sinceSoon(t, tr, "a", log, mid, ".", "n", "n/m", "n/m/f")
	sinceSoon(t, tr, "a", log, start, ".", "n", "n/m", "n/m/f", "sub/f")

	// A directory renamed: what is written in it later has its new path.
	time.Sleep(200 * time.Millisecond)
	_, mid = tr.Position()
	require.NoError(t, os.Rename(filepath.Join(data, "n"), filepath.Join(data, "o")))
	require.NoError(t, os.WriteFile(filepath.Join(data, "o", "m", "g"), nil, 0o644))
	sinceSoon(t, tr, "a", log, mid, "n", "o", "o/m/g")

	got, ok := tr.Since("b", log, start)
	assert.True(t, ok)
	assert.Empty(t, got, "volume b did not change")
	_, ok = tr.Since("a", "another", start)
	assert.False(t, ok, "a position of another tracker tells nothing")
}
