package transfer

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// stagedTree moves src into a fresh staging dir and returns it, with its stored hashes.
func stagedTree(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "staging")
	_, source := move(t, src, dst, 2)
	require.NoError(t, source.Close())
	require.FileExists(t, IndexPath(dst), "the receiver stores its files' hashes beside staging")
	require.FileExists(t, IndexPath(src), "so does the sender, beside its tree")
	return dst
}

// rewrite replaces a file's content but keeps its size and times, as a damaged disk or
// a hand that puts the times back would.
func rewrite(t *testing.T, p string, content []byte) {
	t.Helper()
	fi, err := os.Stat(p)
	require.NoError(t, err)
	require.Len(t, content, int(fi.Size()))
	require.NoError(t, os.WriteFile(p, content, 0o644))
	require.NoError(t, os.Chtimes(p, fi.ModTime(), fi.ModTime()))
}

func TestReusedFilesTakeTheirStoredHashesWithoutBeingRead(t *testing.T) {
	src := fidelityTree(t)
	dst := stagedTree(t, src)
	source, sink := ends(t, src, dst, SinkOptions{AllowPrivileged: true})
	assert.Empty(t, sink.Wanted(), "nothing changed")
	assert.Empty(t, sink.verify, "every reused file has its stored hash: none is read")
	assert.Len(t, sink.kept, 4)
	sendAll(t, source, sink) // and the roots, covering every file, agree
	root, err := source.RootHash()
	require.NoError(t, err)
	h, _ := source.rootHash(true)
	assert.Equal(t, root, h)
}

func TestAReusedFileChangedInStagingIsCaughtAndSentAgain(t *testing.T) {
	ids := testIdentities(t, "node-a", "node-b")
	src := fidelityTree(t)
	ctl := serveVolume(t, ids["node-a"], src)
	staging := filepath.Join(t.TempDir(), "staging")
	pull := func() PullResult {
		t.Helper()
		res, err := Pull(t.Context(), PullOptions{Identity: ids["node-b"], From: "node-a", Control: ctl, Volume: "v", Epoch: 2,
			Staging: staging, Sink: SinkOptions{AllowPrivileged: true}})
		require.NoError(t, err)
		return res
	}
	pull()
	// Damage a staged file without changing its size or times: the size-and-time check
	// reuses it, but its change time says it is not the file whose hash is stored.
	good, err := os.ReadFile(filepath.Join(src, "big.bin"))
	require.NoError(t, err)
	require.NoError(t, DropTree(staging)) // staging changed outside a pull: no record holds
	rewrite(t, filepath.Join(staging, "big.bin"), bytes.Repeat([]byte{'x'}, len(good)))
	res := pull()
	got, err := os.ReadFile(filepath.Join(staging, "big.bin"))
	require.NoError(t, err)
	assert.Equal(t, good, got, "the damaged file was found and sent again")
	assert.Equal(t, 4, res.Files, "after the roots disagreed, every file was sent again")
	want, err := walkEntries(src)
	require.NoError(t, err)
	have, err := walkEntries(staging)
	require.NoError(t, err)
	assert.Equal(t, want, have)
}

func TestAStoredHashThatLiesIsCaughtByTheRootHash(t *testing.T) {
	ids := testIdentities(t, "node-a", "node-b")
	src := fidelityTree(t)
	ctl := serveVolume(t, ids["node-a"], src)
	staging := filepath.Join(t.TempDir(), "staging")
	opts := PullOptions{Identity: ids["node-b"], From: "node-a", Control: ctl, Volume: "v", Epoch: 2, Staging: staging,
		Sink: SinkOptions{AllowPrivileged: true}}
	_, err := Pull(t.Context(), opts)
	require.NoError(t, err)
	// The file and its stored hash are damaged together: only the sender's hash, through
	// the root hash, tells.
	x := loadIndex(IndexPath(staging))
	require.Contains(t, x, "dir/a.txt")
	h := x["dir/a.txt"]
	h.sum[0] ^= 0xff
	x["dir/a.txt"] = h
	require.NoError(t, x.save(IndexPath(staging), true))
	res, err := Pull(t.Context(), opts)
	require.NoError(t, err)
	assert.Equal(t, 4, res.Files, "the roots disagreed, so every file was sent again")
	assert.Equal(t, loadIndex(IndexPath(src))["dir/a.txt"].sum, loadIndex(IndexPath(staging))["dir/a.txt"].sum,
		"the true hash is stored now")
}

func TestHashesStoredBeforeASyncHoldOnlyUntilTheMachineRestarts(t *testing.T) {
	x := hashIndex{"f": {fileStamp: fileStamp{1, 2, 3}, sum: [32]byte{9}}, "big": {fileStamp: fileStamp{4, 5, 6}, sum: [32]byte{7}, chunks: make([]byte, 64)}}
	_, err := decodeIndex(x.encode(true, "an earlier boot"), "this boot")
	require.NoError(t, err, "written after its tree was synced: trusted across a restart")
	got, err := decodeIndex(x.encode(false, "this boot"), "this boot")
	require.NoError(t, err, "not synced, but the machine has not restarted since")
	assert.Equal(t, x, got)
	_, err = decodeIndex(x.encode(false, "an earlier boot"), "this boot")
	require.Error(t, err, "not synced, and the machine restarted since: the files may not be what was hashed")
	_, err = decodeIndex(x.encode(false, ""), "")
	require.Error(t, err, "no boot ID to tell by: not trusted")
}

func TestAFileChangedWithItsTimesPutBackIsNotTakenForTheStoredOne(t *testing.T) {
	src := fidelityTree(t)
	dst := stagedTree(t, src)
	time.Sleep(10 * time.Millisecond) // a change time later than the stored one
	require.NoError(t, DropTree(dst))
	rewrite(t, filepath.Join(dst, "dir", "a.txt"), []byte("not the same.\n\n"))
	_, sink := ends(t, src, dst, SinkOptions{AllowPrivileged: true})
	assert.Empty(t, sink.Wanted(), "by size and times it looks unchanged")
	require.Len(t, sink.verify, 1, "but its change time says it was written: it is read and hashed")
	assert.Equal(t, "dir/a.txt", sink.entries[sink.verify[0]].Path)
}
