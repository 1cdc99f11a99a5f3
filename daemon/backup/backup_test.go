package backup_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/cluster/storetest"
	"github.com/drayage/drayage/daemon/backup"
	"github.com/drayage/drayage/daemon/seed/seedtest"
	"github.com/drayage/drayage/daemon/transfer"
)

// repoOn starts a real S3 server (versitygw) with a bucket and opens a location in it.
func repoOn(t *testing.T, loc string) (*backup.Repo, *seedtest.S3) {
	t.Helper()
	s3 := seedtest.StartS3(t, "127.0.0.1:"+strconv.Itoa(storetest.FreePort(t)), "secret-of-the-backup-test", "backups")
	l, err := backup.ParseLocation(loc)
	require.NoError(t, err)
	return backup.Open(s3.Client, l), s3
}

// volumeTree writes n files of size bytes each, random.
func volumeTree(t *testing.T, n, size int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "sub"), 0o755))
	for i := range n {
		b := make([]byte, size)
		_, _ = rand.Read(b)
		require.NoError(t, os.WriteFile(filepath.Join(dir, "sub", fmt.Sprintf("f%04d", i)), b, 0o644))
	}
	return dir
}

// stored counts the objects (chunks and packs) under prefix in the bucket, and sums their
// bytes, as the server has them.
func stored(t *testing.T, s3 *seedtest.S3, prefix string) (n int, bytes int64) {
	t.Helper()
	for _, dir := range []string{"objects/", "packs/"} {
		for o := range s3.Client.ListObjects(context.Background(), "backups", minio.ListObjectsOptions{Prefix: prefix + dir, Recursive: true}) {
			require.NoError(t, o.Err)
			n++
			bytes += o.Size
		}
	}
	return n, bytes
}

// restored restores snapshot id ("" latest) and returns the staging dir.
func restored(t *testing.T, r *backup.Repo, id string) string {
	t.Helper()
	_, snap, err := r.Load(t.Context(), id)
	require.NoError(t, err)
	staging := filepath.Join(t.TempDir(), "staging")
	_, err = transfer.Restore(t.Context(), staging, snap, r, transfer.RestoreOptions{})
	require.NoError(t, err)
	return staging
}

func sameFiles(t *testing.T, want, got string) {
	t.Helper()
	root, err := transfer.TreeRoot(t.Context(), want)
	require.NoError(t, err)
	other, err := transfer.TreeRoot(t.Context(), got)
	require.NoError(t, err)
	assert.Equal(t, root, other, "the restored tree is the tree backed up")
}

// Against a real S3 server: a second backup after 1% of the files changed uploads only
// those files' content; both snapshots are listed and restore.
func TestASecondBackupUploadsOnlyTheNewContent(t *testing.T) {
	r, s3 := repoOn(t, "s3://backups/volumes/db/")
	dir := volumeTree(t, 200, 64<<10)
	first, err := r.Run(t.Context(), backup.Request{Volume: "db", Node: "node-a", Dir: dir})
	require.NoError(t, err)
	assert.Equal(t, 200, first.Snapshot.Files)
	assert.Equal(t, int64(200*64<<10), first.Snapshot.NewBytes)
	_, before := stored(t, s3, "volumes/db/")
	f0, err := os.ReadFile(filepath.Join(dir, "sub", "f0000"))
	require.NoError(t, err)

	for i := range 2 { // 1% of the files
		b := make([]byte, 64<<10)
		_, _ = rand.Read(b)
		require.NoError(t, os.WriteFile(filepath.Join(dir, "sub", fmt.Sprintf("f%04d", i*50)), b, 0o644))
	}
	second, err := r.Run(t.Context(), backup.Request{Volume: "db", Node: "node-a", Dir: dir})
	require.NoError(t, err)
	assert.Equal(t, first.Snapshot.ID, second.Previous)
	assert.Equal(t, int64(2*64<<10), second.Snapshot.NewBytes, "only the two changed files")
	assert.Equal(t, 198, second.Reused, "the others were not even read")
	_, after := stored(t, s3, "volumes/db/")
	assert.Less(t, after-before, int64(2*64<<10)*11/10, "the server received only the new content (%d bytes)", after-before)

	list, err := r.List(t.Context())
	require.NoError(t, err)
	require.Len(t, list, 2)
	assert.Equal(t, []string{first.Snapshot.ID, second.Snapshot.ID}, []string{list[0].ID, list[1].ID})
	assert.Equal(t, int64(200*64<<10), list[1].Size)
	sameFiles(t, dir, restored(t, r, ""))
	old := restored(t, r, first.Snapshot.ID)
	root, err := transfer.TreeRoot(t.Context(), old)
	require.NoError(t, err)
	assert.Equal(t, first.Snapshot.Root, root)
	b, err := os.ReadFile(filepath.Join(old, "sub", "f0000"))
	require.NoError(t, err)
	assert.Equal(t, f0, b, "the first snapshot holds the file as it was")
}

// --keep 1 leaves the newest snapshot and what it needs, nothing else: chunks stored on
// their own that it does not name, and packs none of whose chunks it names. A prune cut
// off after it removed a snapshot leaves the others whole, and the next prune finishes.
func TestPruneKeepsTheNewestAndWhatTheyName(t *testing.T) {
	r, s3 := repoOn(t, "s3://backups/db")
	dir := volumeTree(t, 20, 10_000) // small files: in packs
	rewrite := func(name string, size int) {
		b := make([]byte, size)
		_, _ = rand.Read(b)
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), b, 0o644))
	}
	for i := range 5 {
		rewrite(fmt.Sprintf("big%d", i), 600<<10) // chunks of their own
	}
	var ids []string
	for i := range 3 {
		if i > 0 {
			rewrite(fmt.Sprintf("big%d", i-1), 600<<10)
			rewrite(fmt.Sprintf("sub/f%04d", i-1), 10_000)
		}
		res, err := r.Run(t.Context(), backup.Request{Volume: "db", Node: "node-a", Dir: dir})
		require.NoError(t, err)
		ids = append(ids, res.Snapshot.ID)
	}
	objects, _ := stored(t, s3, "db/")
	assert.Equal(t, 5+2+3, objects, "5 big files, 2 new versions of them, and a pack per backup")

	ctx, cancel := context.WithCancel(t.Context())
	backup.SetSnapshotRemovedHook(t, cancel) // cut off after its first removal
	_, err := r.Prune(ctx, "node-a", 1)
	require.Error(t, err)
	backup.SetSnapshotRemovedHook(t, nil)
	list, err := r.List(t.Context())
	require.NoError(t, err)
	require.Len(t, list, 2)
	for _, s := range list {
		restored(t, r, s.ID) // every remaining snapshot has all its chunks
	}

	p, err := r.Prune(t.Context(), "node-a", 1)
	require.NoError(t, err)
	assert.Equal(t, []string{ids[1]}, p.Snapshots)
	assert.Equal(t, 2, p.Objects, "the two old versions of big files; each pack still holds a file the newest snapshot names")
	sameFiles(t, dir, restored(t, r, ids[2]))

	// Every small file changes: the older packs hold nothing the newest snapshot names.
	for i := range 20 {
		rewrite(fmt.Sprintf("sub/f%04d", i), 10_000)
	}
	res, err := r.Run(t.Context(), backup.Request{Volume: "db", Node: "node-a", Dir: dir, Keep: 1})
	require.NoError(t, err)
	assert.Equal(t, 3, res.Pruned.Objects, "the three older packs")
	objects, _ = stored(t, s3, "db/")
	assert.Equal(t, 5+1, objects)
	sameFiles(t, dir, restored(t, r, ""))
}

// A location holds one volume's backups; a missing snapshot and an empty location are
// said as such.
func TestALocationIsOneVolumes(t *testing.T) {
	r, _ := repoOn(t, "s3://backups/db/")
	_, _, err := r.Load(t.Context(), "")
	require.ErrorIs(t, err, backup.ErrNotFound)
	assert.Contains(t, err.Error(), "holds no snapshot")
	dir := volumeTree(t, 1, 10)
	_, err = r.Run(t.Context(), backup.Request{Volume: "db", Node: "node-a", Dir: dir})
	require.NoError(t, err)
	_, err = r.Run(t.Context(), backup.Request{Volume: "web", Node: "node-a", Dir: dir})
	require.ErrorIs(t, err, backup.ErrOtherVolume)
	assert.Contains(t, err.Error(), `volume "db"`)
	_, _, err = r.Load(t.Context(), "20000101-000000-00000000")
	require.ErrorIs(t, err, backup.ErrNotFound)

	for _, bad := range []string{"https://host/x/", "s3://", "s3://backups/db/@", "/tmp/backups"} {
		_, err := backup.ParseLocation(bad)
		require.ErrorIs(t, err, backup.ErrBadLocation, bad)
	}
}

// One node writes to a location at a time: another node's live lease refuses a backup,
// naming the node; a lapsed one is taken over; a finished backup leaves no lease.
func TestALocationIsWrittenByOneNodeAtATime(t *testing.T) {
	r, s3 := repoOn(t, "s3://backups/db/")
	dir := volumeTree(t, 3, 100)
	lease := func(expires time.Time) {
		b := fmt.Appendf(nil, `{"node":"node-b","volume":"db","token":"theirs","expires":%q}`, expires.Format(time.RFC3339Nano))
		_, err := s3.Client.PutObject(t.Context(), "backups", "db/lock", bytes.NewReader(b), int64(len(b)), minio.PutObjectOptions{})
		require.NoError(t, err)
	}
	lease(time.Now().Add(time.Minute))
	_, err := r.Run(t.Context(), backup.Request{Volume: "db", Node: "node-a", Dir: dir})
	require.ErrorIs(t, err, backup.ErrBusy)
	assert.Contains(t, err.Error(), `node "node-b"`)
	_, err = r.Prune(t.Context(), "node-a", 1)
	require.ErrorIs(t, err, backup.ErrBusy)

	lease(time.Now().Add(-time.Second))
	_, err = r.Run(t.Context(), backup.Request{Volume: "db", Node: "node-a", Dir: dir})
	require.NoError(t, err, "a lapsed lease is taken over")
	_, err = s3.Client.StatObject(t.Context(), "backups", "db/lock", minio.StatObjectOptions{})
	assert.Equal(t, "NoSuchKey", minio.ToErrorResponse(err).Code, "the lease is removed when the backup is done")
}
