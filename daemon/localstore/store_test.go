package localstore

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestCreateSaveLoadDelete(t *testing.T) {
	s, err := Open(t.TempDir())
	require.NoError(t, err)
	rec := Record{Name: "v1", Options: map[string]string{"mode": "0700"}, Created: time.Now().UTC().Round(0)}
	require.NoError(t, s.Create(rec, os.Getuid(), os.Getgid(), 0o700))
	require.ErrorIs(t, s.Create(rec, os.Getuid(), os.Getgid(), 0o700), ErrExist)

	got, err := s.Load("v1")
	require.NoError(t, err)
	assert.Equal(t, rec.Options, got.Options)
	assert.True(t, rec.Created.Equal(got.Created))

	got.Mounts = map[string]int{"c1": 2}
	require.NoError(t, s.Save(got))
	again, err := s.Load("v1")
	require.NoError(t, err)
	assert.Equal(t, 2, again.MountCount())

	require.NoError(t, s.Delete("v1"))
	_, err = s.Load("v1")
	require.ErrorIs(t, err, ErrNotExist)
	require.ErrorIs(t, s.Delete("v1"), ErrNotExist)
	require.ErrorIs(t, s.Save(got), ErrNotExist)
}

func TestInterruptedCreateAndRemoveLeaveNothingVisible(t *testing.T) {
	root := t.TempDir()
	s, err := Open(root)
	require.NoError(t, err)
	// What a crash in the middle of a create or a remove leaves behind.
	require.NoError(t, os.MkdirAll(filepath.Join(root, "tmp", "half.123", "data"), 0o700))
	require.NoError(t, os.MkdirAll(filepath.Join(root, "trash", "gone.456", "volume", "data"), 0o700))

	recs, err := s.List()
	require.NoError(t, err)
	assert.Empty(t, recs, "half-made and half-deleted volumes are never listed")

	_, err = Open(root)
	require.NoError(t, err)
	for _, dir := range []string{"tmp", "trash"} {
		entries, err := os.ReadDir(filepath.Join(root, dir))
		require.NoError(t, err)
		assert.Empty(t, entries, "%s is swept on open", dir)
	}
}

func TestCorruptRecordIsReportedWithItsPath(t *testing.T) {
	root := t.TempDir()
	s, err := Open(root)
	require.NoError(t, err)
	require.NoError(t, s.Create(Record{Name: "v1"}, os.Getuid(), os.Getgid(), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "volumes", "v1", "volume.json"), []byte("{"), 0o600))
	_, err = s.Load("v1")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `volume "v1"`)
	assert.Contains(t, err.Error(), filepath.Join(root, "volumes", "v1"))
}

func TestSizeCountsRegularFilesOnly(t *testing.T) {
	root := t.TempDir()
	s, err := Open(root)
	require.NoError(t, err)
	require.NoError(t, s.Create(Record{Name: "v1"}, os.Getuid(), os.Getgid(), 0o755))
	data := s.DataDir("v1")
	require.NoError(t, os.WriteFile(filepath.Join(data, "a"), make([]byte, 300), 0o644))
	require.NoError(t, os.Mkdir(filepath.Join(data, "d"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(data, "d", "b"), make([]byte, 700), 0o644))
	require.NoError(t, os.Symlink("/etc/passwd", filepath.Join(data, "l")))
	n, err := s.Size("v1")
	require.NoError(t, err)
	assert.Equal(t, int64(1000), n)
}

func TestUninstallPutsThePulledTreeBackInStaging(t *testing.T) {
	s, err := Open(t.TempDir())
	require.NoError(t, err)
	staging := s.StagingDir("v1")
	require.NoError(t, os.MkdirAll(filepath.Join(staging, "sub"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(staging, "sub", "f"), []byte("pulled"), 0o644))
	require.NoError(t, s.Install(Record{Name: "v1"}, staging))
	_, err = s.Load("v1")
	require.NoError(t, err)

	require.NoError(t, s.Uninstall("v1"))
	_, err = s.Load("v1")
	require.ErrorIs(t, err, ErrNotExist, "the volume is no longer held here")
	b, err := os.ReadFile(filepath.Join(staging, "sub", "f"))
	require.NoError(t, err, "its tree is back in staging for the next pull")
	assert.Equal(t, "pulled", string(b))
	require.ErrorIs(t, s.Uninstall("v1"), ErrNotExist)
}

func TestReuseReplicaMakesTheOldCopyTheStagingTree(t *testing.T) {
	s, err := Open(t.TempDir())
	require.NoError(t, err)
	reused, err := s.ReuseReplica("none")
	require.NoError(t, err)
	assert.False(t, reused, "no replica, nothing to reuse")

	require.NoError(t, s.Create(Record{Name: "v1", Epoch: 3}, os.Getuid(), os.Getgid(), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(s.DataDir("v1"), "f"), []byte("old"), 0o644))
	reused, err = s.ReuseReplica("v1")
	require.NoError(t, err)
	assert.False(t, reused, "a copy not confirmed held elsewhere is never written over")
	rec, err := s.Load("v1")
	require.NoError(t, err)
	rec.MovedTo, rec.MovedAt = "node-b", 4
	rec.Mounts = map[string]int{"c1": 1}
	require.NoError(t, s.Save(rec))
	reused, err = s.ReuseReplica("v1")
	require.NoError(t, err)
	assert.False(t, reused, "a replica in use here stays")

	rec.Mounts = nil
	require.NoError(t, s.Save(rec))
	reused, err = s.ReuseReplica("v1")
	require.NoError(t, err)
	assert.True(t, reused)
	b, err := os.ReadFile(filepath.Join(s.StagingDir("v1"), "f"))
	require.NoError(t, err)
	assert.Equal(t, "old", string(b))
	_, err = s.Load("v1")
	require.ErrorIs(t, err, ErrNotExist)

	reused, err = s.ReuseReplica("v1")
	require.NoError(t, err)
	assert.False(t, reused, "a staging tree from an earlier pull is kept as it is")
}

func TestStagingThatNoPullUsedForAWhileIsSwept(t *testing.T) {
	s, err := Open(t.TempDir())
	require.NoError(t, err)
	for _, name := range []string{"abandoned", "running", "recent"} {
		require.NoError(t, os.MkdirAll(filepath.Join(s.StagingDir(name), "d"), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(s.StagingDir(name), "d", "f"), []byte("arrived"), 0o644))
	}
	require.NoError(t, os.WriteFile(s.StagingDir("abandoned")+".b3", []byte("hashes"), 0o600))
	require.NoError(t, os.WriteFile(s.StagingDir("gone")+".b3", []byte("hashes of a tree gone"), 0o600))
	inUse := func(name string) bool { return name == "running" }

	swept, err := s.SweepStaging(time.Hour, inUse)
	require.NoError(t, err)
	assert.Empty(t, swept, "all were used within the hour")
	// The trees' change times can't be set back, so they age for real: long enough
	// beyond the window that a slow machine between the write and the sweep can't
	// make "recent" look old.
	const window = time.Second
	time.Sleep(window + 100*time.Millisecond)
	require.NoError(t, os.WriteFile(s.StagingDir("recent")+".b3", []byte("a pull just ended"), 0o600))
	swept, err = s.SweepStaging(window, inUse)
	require.NoError(t, err)
	assert.Equal(t, []string{"abandoned"}, swept)
	assert.NoDirExists(t, s.StagingDir("abandoned"))
	assert.NoFileExists(t, s.StagingDir("abandoned")+".b3", "its stored hashes go with it")
	assert.NoFileExists(t, s.StagingDir("gone")+".b3", "stored hashes with no tree go")
	assert.DirExists(t, s.StagingDir("running"), "a pull running now keeps its staging")
	assert.DirExists(t, s.StagingDir("recent"), "a pull that ended just now keeps it")
}

func TestAVolumeWithAMountInsideIsNotDeleted(t *testing.T) {
	s, err := Open(t.TempDir())
	require.NoError(t, err)
	require.NoError(t, s.Create(Record{Name: "v1"}, os.Getuid(), os.Getgid(), 0o755))
	outside := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(outside, "secret"), []byte("not the volume's"), 0o600))
	mnt := filepath.Join(s.DataDir("v1"), "mnt")
	require.NoError(t, os.Mkdir(mnt, 0o755))
	require.NoError(t, unix.Mount(outside, mnt, "", unix.MS_BIND, ""), "bind mount (run the tests as root)")
	t.Cleanup(func() { _ = unix.Unmount(mnt, unix.MNT_DETACH) })

	err = s.Delete("v1")
	require.ErrorIs(t, err, ErrMountInside)
	assert.Contains(t, err.Error(), mnt)
	assert.FileExists(t, filepath.Join(outside, "secret"), "what is mounted there stays")
	require.NoError(t, unix.Unmount(mnt, 0))
	require.NoError(t, s.Delete("v1"))
	assert.FileExists(t, filepath.Join(outside, "secret"))
}

// An install over a tree held here swaps the trees at once and leaves the old one in
// trash/, deleted later: a Mount does not wait for a large tree to be deleted.
func TestInstallOverATreeLeavesTheOldOneForEmptyTrash(t *testing.T) {
	s, err := Open(t.TempDir())
	require.NoError(t, err)
	for _, content := range []string{"old", "new"} {
		staging := s.StagingDir("v1")
		require.NoError(t, os.MkdirAll(staging, 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(staging, "f"), []byte(content), 0o644))
		require.NoError(t, s.Install(Record{Name: "v1"}, staging))
	}
	b, err := os.ReadFile(filepath.Join(s.DataDir("v1"), "f"))
	require.NoError(t, err)
	assert.Equal(t, "new", string(b))
	trash, err := os.ReadDir(s.trashDir())
	require.NoError(t, err)
	require.Len(t, trash, 1, "the old tree waits in trash/")
	require.NoError(t, s.EmptyTrash())
	trash, err = os.ReadDir(s.trashDir())
	require.NoError(t, err)
	assert.Empty(t, trash)
	_, err = os.Lstat(s.StagingDir("v1"))
	assert.ErrorIs(t, err, os.ErrNotExist, "no staging tree is left")
}
