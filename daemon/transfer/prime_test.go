package transfer

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// A replica syncs into the tree its last sync replaced, primed from the replica: only
// what changed at the source since the replica's sync crosses the wire, and the replica
// itself is never written.
func TestAPullPrimedFromABasisSendsOnlyWhatChangedSinceIt(t *testing.T) {
	src := fidelityTree(t)
	dir := t.TempDir()
	replica, staging := filepath.Join(dir, "replica"), filepath.Join(dir, "staging")
	move(t, src, replica, 2) // the replica's first sync
	before, err := walkEntries(replica)
	require.NoError(t, err)

	require.NoError(t, os.WriteFile(filepath.Join(src, "zero"), []byte("changed at the source"), 0o600))
	files, bytes, err := Prime(t.Context(), replica, staging, true)
	require.NoError(t, err)
	assert.Positive(t, files, "an empty staging tree is filled from the basis")
	assert.Positive(t, bytes)

	sink, source := move(t, src, staging, 2)
	assert.Len(t, sink.Wanted(), 1, "only the file changed since the basis")
	assert.Equal(t, int64(len("changed at the source")), source.Bytes())
	assert.Empty(t, sink.verify, "the primed files came with their hashes")
	want, err := walkEntries(src)
	require.NoError(t, err)
	got, err := walkEntries(staging)
	require.NoError(t, err)
	assert.Equal(t, want, got)
	after, err := walkEntries(replica)
	require.NoError(t, err)
	assert.Equal(t, before, after, "the basis is only read")

	// Primed again from an unchanged basis, a staging tree that matches copies nothing
	// but what differs from the basis.
	files, _, err = Prime(t.Context(), replica, staging, true)
	require.NoError(t, err)
	assert.Equal(t, 1, files, "the one file staging has newer than the basis")
}

// A file written between the walk and the end of its reading (a replica sync of a
// mounted volume) may be read torn: the source says so, and the transfer does not count.
func TestAFileWrittenWhileSentIsReportedChanged(t *testing.T) {
	src := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(src, "db"), []byte("version 1"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(src, "still"), []byte("unchanged"), 0o600))
	time.Sleep(2 * racyWindow) // "still" has not changed for a while when it is read
	source, sink := ends(t, src, filepath.Join(t.TempDir(), "staging"), SinkOptions{})
	source.live = true
	require.NoError(t, os.WriteFile(filepath.Join(src, "db"), []byte("version 2"), 0o600)) // same size
	sendAll(t, source, sink)
	assert.Equal(t, []string{"db"}, source.Changed())
}

// A file changed within a clock tick of its reading may change again unseen (its times
// would not move): it counts as changed, and the retry sends it.
func TestAFileChangedJustBeforeItIsReadIsNotSentAsSettled(t *testing.T) {
	var st unix.Stat_t
	now := time.Now()
	st.Ctim = unix.NsecToTimespec(now.Add(-time.Millisecond).UnixNano())
	assert.True(t, racy(&st, now))
	st.Ctim = unix.NsecToTimespec(now.Add(-time.Second).UnixNano())
	assert.False(t, racy(&st, now))
	st.Ctim = unix.NsecToTimespec(now.Add(time.Hour).UnixNano())
	assert.False(t, racy(&st, now), "a clock that went back makes nothing racy")

	src := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(src, "db"), []byte("just written"), 0o600))
	source, sink := ends(t, src, filepath.Join(t.TempDir(), "staging"), SinkOptions{})
	source.live = true
	sendAll(t, source, sink)
	assert.Equal(t, []string{"db"}, source.Changed())

	// A volume no one writes meanwhile (a move: it is not mounted) has no such race.
	source, sink = ends(t, src, filepath.Join(t.TempDir(), "staging"), SinkOptions{})
	sendAll(t, source, sink)
	assert.Empty(t, source.Changed())
}

// swapTrees exchanges two trees and what is kept beside them, as a replica's sync
// installs its staging tree (localstore.InstallReplica).
func swapTrees(t *testing.T, a, b string) {
	t.Helper()
	require.NoError(t, unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE))
	for _, pathOf := range []func(string) string{TreePath, IndexPath} {
		require.NoError(t, unix.Renameat2(unix.AT_FDCWD, pathOf(a), unix.AT_FDCWD, pathOf(b), unix.RENAME_EXCHANGE))
	}
}

// A large file a sync changed in place is brought into the replica's staging tree (the
// tree the sync replaced) by copying the parts the sync wrote, not the whole file: the
// next sync, or a move to the replica's node, starts from a staging tree as current as
// the replica for the cost of what changed.
func TestPrimingCopiesOnlyThePartsOfALargeFileTheLastSyncWrote(t *testing.T) {
	const size = 8 << 20
	src, data, pull := largeFileSender(t, size)
	dir := t.TempDir()
	replica, staging := filepath.Join(dir, "replica"), filepath.Join(dir, "staging")
	pull(replica) // the first sync
	_, _, err := Prime(t.Context(), replica, staging, true)
	require.NoError(t, err)

	for i := range 10 { // the second sync: ten 4 KiB writes in place
		_, _ = rand.Read(data[i*(size/10)+100 : i*(size/10)+100+4096])
	}
	require.NoError(t, os.WriteFile(filepath.Join(src, "db"), data, 0o600))
	assert.Less(t, pull(staging).Bytes, int64(size/4), "the second sync sends the changed chunks")
	swapTrees(t, staging, replica) // the staging tree now holds the first sync's file

	files, bytes, err := Prime(t.Context(), replica, staging, true)
	require.NoError(t, err)
	assert.Equal(t, 1, files)
	assert.LessOrEqual(t, bytes, int64(10*deltaChunk), "the parts the sync wrote, not the 8 MiB file")
	got, err := os.ReadFile(filepath.Join(staging, "db"))
	require.NoError(t, err)
	assert.Equal(t, data, got, "staging's copy is the replica's")
	assert.Zero(t, pull(staging).Files, "nothing left to send")
	t.Logf("an 8 MiB file with ten 4 KiB writes: staging brought up to date by copying %d bytes", bytes)
}

// A large file staging holds an older copy of, with no record of how it changed, is not
// copied whole: the pull offers the older copy's chunks and is sent those that differ.
func TestPrimingLeavesAnOlderCopyOfALargeFileToTheChunkDelta(t *testing.T) {
	const size = 8 << 20
	_, data, pull := largeFileSender(t, size)
	dir := t.TempDir()
	replica, staging := filepath.Join(dir, "replica"), filepath.Join(dir, "staging")
	require.NoError(t, os.MkdirAll(staging, 0o700))
	older := append([]byte(nil), data...)
	_, _ = rand.Read(older[size/2 : size/2+4096])
	require.NoError(t, os.WriteFile(filepath.Join(staging, "db"), older, 0o600))
	pull(replica)

	_, bytes, err := Prime(t.Context(), replica, staging, false)
	require.NoError(t, err)
	assert.Zero(t, bytes, "the older copy stays")
	res := pull(staging)
	assert.LessOrEqual(t, res.Bytes, int64(2*deltaChunk), "the chunk that differs")
	got, err := os.ReadFile(filepath.Join(staging, "db"))
	require.NoError(t, err)
	assert.Equal(t, data, got)
}

// largeFileSender serves a volume holding one file, db, of size random bytes, and returns
// its dir, the file's content, and a pull of it into a staging dir.
func largeFileSender(t *testing.T, size int) (string, []byte, func(into string) PullResult) {
	t.Helper()
	src := t.TempDir()
	data := make([]byte, size)
	_, _ = rand.Read(data)
	require.NoError(t, os.WriteFile(filepath.Join(src, "db"), data, 0o600))
	ids := testIdentities(t, "node-a", "node-b")
	ctl := serveVolume(t, ids["node-a"], src)
	return src, data, func(into string) PullResult {
		t.Helper()
		res, err := Pull(t.Context(), PullOptions{Identity: ids["node-b"], From: "node-a", Control: ctl, Volume: "v", Epoch: 2, Staging: into})
		require.NoError(t, err)
		return res
	}
}
