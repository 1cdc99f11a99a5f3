package transfer

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zeebo/blake3"
	"golang.org/x/sys/unix"
)

// memBlobs keeps chunks in memory and counts what is put and fetched.
type memBlobs struct {
	mu       sync.Mutex
	chunks   map[[32]byte][]byte
	put, got int
	putBytes int64
	fail     map[[32]byte]bool // chunks whose Get fails
}

func newMemBlobs() *memBlobs { return &memBlobs{chunks: map[[32]byte][]byte{}} }

func (m *memBlobs) Put(_ context.Context, sum [32]byte, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.chunks[sum] = append([]byte(nil), data...)
	m.put++
	m.putBytes += int64(len(data))
	return nil
}

func (m *memBlobs) Get(_ context.Context, sum [32]byte) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.got++
	if m.fail[sum] {
		return nil, errors.New("the object store went away")
	}
	b, ok := m.chunks[sum]
	if !ok {
		return nil, errors.New("no such chunk")
	}
	return append([]byte(nil), b...), nil
}

func TestABackupRestoresWithEverythingItHeld(t *testing.T) {
	src := fidelityTree(t)
	blobs := newMemBlobs()
	res, err := Backup(t.Context(), src, blobs, BackupOptions{})
	require.NoError(t, err)
	root, err := TreeRoot(t.Context(), src)
	require.NoError(t, err)
	assert.Equal(t, root, res.Snapshot.Root(), "a snapshot's root hash is the one a transfer of the tree sends")
	assert.Equal(t, 4, res.Snapshot.Files())
	// big.bin is one chunk, a.txt another; the 64 MiB sparse file is 16 chunks, 14 of them
	// zeros stored once; the empty file has none.
	assert.Equal(t, 5, res.NewChunks, "a chunk is stored once, however often it occurs")

	b, err := res.Snapshot.MarshalBinary()
	require.NoError(t, err)
	snap, err := UnmarshalSnapshot(b)
	require.NoError(t, err)

	staging := filepath.Join(t.TempDir(), "staging")
	got, err := Restore(t.Context(), staging, snap, blobs, RestoreOptions{Sink: SinkOptions{AllowPrivileged: true}})
	require.NoError(t, err)
	assert.Equal(t, res.Snapshot.root, got.RootHash)
	want, err := walkEntries(src)
	require.NoError(t, err)
	have, err := walkEntries(staging)
	require.NoError(t, err)
	assert.Equal(t, want, have, "owners, modes, nanosecond times, xattrs and ACLs, links, the fifo")
	var st unix.Stat_t
	require.NoError(t, unix.Stat(filepath.Join(staging, "sparse"), &st))
	assert.Less(t, st.Blocks*512, int64(1<<20), "the 64 MiB sparse file stays sparse")
	for _, p := range []string{"big.bin", "dir/a.txt", "sparse"} {
		a, _ := os.ReadFile(filepath.Join(src, p))
		b, _ := os.ReadFile(filepath.Join(staging, p))
		assert.Equal(t, a, b, p)
	}
}

// A second backup reads only the files that changed (the others' hashes are stored
// beside the tree) and stores only their new chunks.
func TestASecondBackupStoresOnlyWhatChanged(t *testing.T) {
	src := t.TempDir()
	for i := range 100 {
		b := make([]byte, 10_000)
		_, _ = rand.Read(b)
		require.NoError(t, os.WriteFile(filepath.Join(src, "f"+string(rune('a'+i/26))+string(rune('a'+i%26))), b, 0o644))
	}
	big := make([]byte, 3*SnapshotChunk)
	_, _ = rand.Read(big)
	require.NoError(t, os.WriteFile(filepath.Join(src, "big"), big, 0o644))
	time.Sleep(2 * racyWindow) // the backup can vouch for files not written just before it
	blobs := newMemBlobs()
	first, err := Backup(t.Context(), src, blobs, BackupOptions{})
	require.NoError(t, err)
	assert.Equal(t, 103, first.NewChunks)

	require.NoError(t, os.WriteFile(filepath.Join(src, "faa"), []byte("changed"), 0o644))
	f, err := os.OpenFile(filepath.Join(src, "big"), os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteAt([]byte("a few bytes in the middle chunk"), SnapshotChunk+100)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	time.Sleep(2 * racyWindow)
	put := blobs.putBytes

	second, err := Backup(t.Context(), src, blobs, BackupOptions{Previous: first.Snapshot})
	require.NoError(t, err)
	assert.Equal(t, 2, second.NewChunks, "the changed file, and the one chunk of big that changed")
	assert.Equal(t, int64(len("changed")+SnapshotChunk), blobs.putBytes-put)
	assert.Equal(t, 99, second.Reused, "the unchanged files are not read")
	assert.Equal(t, int64(len("changed")+3*SnapshotChunk), second.Read)
	root, err := TreeRoot(t.Context(), src)
	require.NoError(t, err)
	assert.Equal(t, root, second.Snapshot.Root())

	// The first snapshot still restores as it was.
	staging := filepath.Join(t.TempDir(), "staging")
	_, err = Restore(t.Context(), staging, first.Snapshot, blobs, RestoreOptions{})
	require.NoError(t, err)
	b, err := os.ReadFile(filepath.Join(staging, "big"))
	require.NoError(t, err)
	assert.Equal(t, big, b)
}

// A file written while it is read is read again, and kept as it was at one moment.
func TestAFileWrittenWhileBackedUpIsReadAgain(t *testing.T) {
	src := t.TempDir()
	p := filepath.Join(src, "log")
	require.NoError(t, os.WriteFile(p, make([]byte, 2*SnapshotChunk), 0o644))
	blobs := &appendOnFirstPut{memBlobs: newMemBlobs(), path: p}
	res, err := Backup(t.Context(), src, blobs, BackupOptions{})
	require.NoError(t, err)
	assert.Empty(t, res.Changed, "the second reading was steady")
	want, err := os.ReadFile(p)
	require.NoError(t, err)
	staging := filepath.Join(t.TempDir(), "staging")
	_, err = Restore(t.Context(), staging, res.Snapshot, blobs, RestoreOptions{})
	require.NoError(t, err)
	got, err := os.ReadFile(filepath.Join(staging, "log"))
	require.NoError(t, err)
	assert.Equal(t, want, got, "the file as it was after the write, not a mix")
}

// appendOnFirstPut appends to a file when the first chunk is stored: a write that lands
// while the file is read.
type appendOnFirstPut struct {
	*memBlobs
	path string
	once sync.Once
}

func (a *appendOnFirstPut) Put(ctx context.Context, sum [32]byte, data []byte) error {
	a.once.Do(func() {
		f, err := os.OpenFile(a.path, os.O_APPEND|os.O_WRONLY, 0)
		if err == nil {
			_, _ = f.WriteString("a record written meanwhile\n")
			_ = f.Close()
		}
	})
	return a.memBlobs.Put(ctx, sum, data)
}

// What the object store holds is checked: a chunk that is not its hash's content, or a
// snapshot whose files are not its root's, is refused and no file is completed.
func TestARestoreRefusesWhatIsNotTheSnapshot(t *testing.T) {
	src := fidelityTree(t)
	blobs := newMemBlobs()
	res, err := Backup(t.Context(), src, blobs, BackupOptions{})
	require.NoError(t, err)
	big, err := os.ReadFile(filepath.Join(src, "big.bin"))
	require.NoError(t, err)
	sum := blake3.Sum256(big)
	blobs.chunks[sum][7] ^= 1

	staging := filepath.Join(t.TempDir(), "staging")
	_, err = Restore(t.Context(), staging, res.Snapshot, blobs, RestoreOptions{Sink: SinkOptions{AllowPrivileged: true}})
	require.ErrorIs(t, err, ErrCorrupt)
	assert.Contains(t, err.Error(), "big.bin")
	_, err = os.Stat(filepath.Join(staging, "big.bin"))
	assert.True(t, os.IsNotExist(err), "a file whose content failed is not left")

	blobs.chunks[sum][7] ^= 1
	forged := *res.Snapshot
	forged.root[0] ^= 1
	_, err = Restore(t.Context(), filepath.Join(t.TempDir(), "staging"), &forged, blobs, RestoreOptions{Sink: SinkOptions{AllowPrivileged: true}})
	require.ErrorIs(t, err, ErrRootMismatch)

	forged = *res.Snapshot
	forged.files = maps.Clone(forged.files)
	for i, f := range forged.files {
		f.sum[0] ^= 1
		forged.files[i] = f
	}
	_, err = Restore(t.Context(), filepath.Join(t.TempDir(), "staging"), &forged, blobs, RestoreOptions{Sink: SinkOptions{AllowPrivileged: true}})
	require.ErrorIs(t, err, ErrCorrupt, "genuine chunks that do not make the file the snapshot lists")
}

// An interrupted restore resumes from the files it finished.
func TestARestoreResumes(t *testing.T) {
	src := t.TempDir()
	var last []byte
	for i := range 12 {
		last = make([]byte, 64<<10)
		_, _ = rand.Read(last)
		require.NoError(t, os.WriteFile(filepath.Join(src, fmt.Sprintf("f%02d", i)), last, 0o644))
	}
	blobs := newMemBlobs()
	res, err := Backup(t.Context(), src, blobs, BackupOptions{})
	require.NoError(t, err)
	staging := filepath.Join(t.TempDir(), "staging")
	blobs.fail = map[[32]byte]bool{blake3.Sum256(last): true}
	_, err = Restore(t.Context(), staging, res.Snapshot, blobs, RestoreOptions{})
	require.Error(t, err)
	blobs.fail = nil
	again, err := Restore(t.Context(), staging, res.Snapshot, blobs, RestoreOptions{})
	require.NoError(t, err)
	// The failing file is the last of the last of 4 streams, which finished the two before
	// it; the first failure stops the other streams wherever they are.
	assert.LessOrEqual(t, again.Files, 10, "the files finished before the failure are not fetched again")
	assert.GreaterOrEqual(t, again.Files, 1)
}

// A snapshot read back from object storage is untrusted: malformed ones are refused, and
// one whose manifest no pull would accept restores nothing.
func TestAForgedSnapshotIsRefused(t *testing.T) {
	for _, b := range [][]byte{nil, []byte("drayage-snapshot 9\n"), []byte(snapshotMagic + "\xff\xff\xff\xff\x0f")} {
		_, err := UnmarshalSnapshot(b)
		require.ErrorIs(t, err, ErrHostile)
	}
	snap := &Snapshot{entries: []entry{{Path: ".", Kind: kindDir, Mode: 0o755}, {Path: "../escape", Kind: kindFile, Mode: 0o644}},
		files: map[uint32]snapshotFile{1: {sum: blake3.Sum256(nil)}}}
	b, err := snap.MarshalBinary()
	require.NoError(t, err)
	back, err := UnmarshalSnapshot(b)
	require.NoError(t, err)
	b, err = back.MarshalBinary()
	require.NoError(t, err)
	_, err = UnmarshalSnapshot(b[:len(b)-1])
	require.ErrorIs(t, err, ErrHostile, "a truncated snapshot")
	dir := t.TempDir()
	_, err = Restore(t.Context(), filepath.Join(dir, "staging"), back, newMemBlobs(), RestoreOptions{})
	require.ErrorIs(t, err, ErrHostile)
	_, err = os.Stat(filepath.Join(dir, "escape"))
	assert.True(t, os.IsNotExist(err))
}
