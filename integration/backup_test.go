package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/drayage/drayage/cluster/storetest"
	"github.com/drayage/drayage/daemon/backup"
	"github.com/drayage/drayage/daemon/seed/seedtest"
	"github.com/drayage/drayage/daemon/transfer"
	"github.com/drayage/drayage/progress"
)

// Backups: 'drayage volume backup' of volumes that containers write, on real engines
// and a real S3 server (versitygw), restored on another node through 'docker run'; and
// backups and prunes killed (SIGKILL) at their worst points, on host daemons.

// backupOf runs 'drayage volume backup --json' on node n and returns what it did.
func backupOf(t *testing.T, n *node, name, to string, more ...string) backup.Result {
	t.Helper()
	var res backup.Result
	out := n.drayage(append([]string{"volume", "backup", name, "--to", to, "--json"}, more...)...)
	require.NoError(t, json.Unmarshal([]byte(out), &res), out)
	return res
}

// bucketBytes sums the bytes the S3 server holds under prefix.
func bucketBytes(t *testing.T, c *minio.Client, prefix string) int64 {
	t.Helper()
	var n int64
	for o := range c.ListObjects(context.Background(), s3Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		require.NoError(t, o.Err)
		n += o.Size
	}
	return n
}

// backupCases run on the seeding tests' cluster: node a holds volume bk, which a
// container keeps appending to, and node b asks for the backups and restores them.
func backupCases(t *testing.T, c *seedCluster) {
	const loc = "s3://" + s3Bucket + "/backups/bk/"
	c.a.docker("volume", "create", "--driver", nodePlugin, "bk")
	c.a.run("--mount", mountOf("bk"), testImage, "sh", "-c",
		"for i in $(seq 1 400); do head -c 16384 /dev/urandom > /data/f$i; done; head -c 8388608 /dev/urandom > /data/big; chown 1000:1001 /data/f1; chmod 600 /data/f2; "+
			"ln /data/f3 /data/f3-link; ln -s f4 /data/f4-sym; dd if=/dev/zero of=/data/sparse bs=1 count=0 seek=33554432 2>/dev/null; echo end >> /data/sparse; "+
			"mkdir -m 0750 /data/dir; chown 7:8 /data/dir; touch -d '2020-02-02 02:02:02' /data/f5")
	data := filepath.Join(c.a.state, "volumes", "bk", "data")
	require.NoError(t, unix.Setxattr(filepath.Join(data, "f6"), "user.origin", []byte("backup test"), 0), "an extended attribute")
	require.Less(t, allocated(t, filepath.Join(data, "sparse")), int64(1<<20), "the source file is sparse")
	writer := c.a.docker("run", "-d", "--network", "none", "--mount", mountOf("bk"), testImage, "sh", "-c",
		"i=0; while :; do echo record-$i >> /data/log; i=$((i+1)); usleep 2000; done")
	f1, err := os.ReadFile(filepath.Join(data, "f1"))
	require.NoError(t, err)

	// From the other node: the owner does the work, while the container writes.
	first := backupOf(t, c.b, "bk", loc)
	assert.Equal(t, "seed-a", first.Snapshot.Node, "the volume's owner backed it up")
	assert.GreaterOrEqual(t, first.Snapshot.Files, 401, "400 small files, big, and the log once written")
	t.Logf("first backup of a mounted volume being written: %d files, %d bytes, %d new, in %s", first.Snapshot.Files, first.Snapshot.Size, first.Snapshot.NewBytes, first.Took)

	// 1% of the files change: the second backup uploads their content and the log's.
	c.a.run("--mount", mountOf("bk"), testImage, "sh", "-c", "for i in 1 101 201 301; do head -c 16384 /dev/urandom > /data/f$i; done")
	before := bucketBytes(t, c.s3, "backups/bk/objects/") + bucketBytes(t, c.s3, "backups/bk/packs/")
	second := backupOf(t, c.b, "bk", loc)
	uploaded := bucketBytes(t, c.s3, "backups/bk/objects/") + bucketBytes(t, c.s3, "backups/bk/packs/") - before
	logSize := int64(0)
	if st, err := os.Stat(filepath.Join(data, "log")); err == nil {
		logSize = st.Size()
	}
	t.Logf("second backup, 4 of 402 files changed: %d new bytes of %d (%.2f%%), %d bytes reached the server, %d files not read, log %d bytes",
		second.Snapshot.NewBytes, second.Snapshot.Size, 100*float64(second.Snapshot.NewBytes)/float64(second.Snapshot.Size), uploaded, second.Reused, logSize)
	assert.Equal(t, first.Snapshot.ID, second.Previous)
	assert.GreaterOrEqual(t, second.Snapshot.NewBytes, int64(4*16384))
	// The log changes as it is read: each reading of it stores its chunk (at most 3).
	assert.LessOrEqual(t, second.Snapshot.NewBytes, int64(4*16384)+3*logSize, "only the changed files and the log")
	assert.LessOrEqual(t, uploaded, second.Snapshot.NewBytes+4096, "the server received no more than the new content")
	assert.GreaterOrEqual(t, second.Reused, 397, "the unchanged files were not read")

	ls := c.b.drayage("backup", "ls", loc)
	assert.Contains(t, ls, first.Snapshot.ID)
	assert.Regexp(t, `(?m)^SNAPSHOT +TIME +VOLUME +NODE +FILES +SIZE +NEW$`, ls)
	assert.Regexp(t, fmt.Sprintf(`(?m)^%s +%s +bk +seed-a +%d +%s +%s$`, second.Snapshot.ID,
		regexp.QuoteMeta(second.Snapshot.Time.Local().Format(time.DateTime)), second.Snapshot.Files,
		regexp.QuoteMeta(progress.BytesUnit(second.Snapshot.Size)), regexp.QuoteMeta(progress.BytesUnit(second.Snapshot.NewBytes))), ls,
		"a line per snapshot: its time, volume, node, files, size and new bytes")
	assert.WithinDuration(t, time.Now(), second.Snapshot.Time, 5*time.Minute)
	t.Logf("drayage backup ls:\n%s", ls)

	// The first snapshot, by name, on the other node: f1 as it was then.
	c.b.docker("volume", "create", "--driver", nodePlugin, "-o", "from="+loc+"@"+first.Snapshot.ID, "bk1")
	out := c.b.run("--mount", mountOf("bk1"), testImage, "sh", "-c", "md5sum < /data/f1")
	assert.NotEqual(t, strings.Fields(run(t, "sh", "-c", "md5sum < "+filepath.Join(data, "f1")))[0], strings.Fields(out)[0], "f1 changed since")
	restored, err := os.ReadFile(filepath.Join(c.b.state, "volumes", "bk1", "data", "f1"))
	require.NoError(t, err)
	assert.Equal(t, f1, restored, "the first snapshot holds f1 as it was")
	log1, err := os.ReadFile(filepath.Join(c.b.state, "volumes", "bk1", "data", "log"))
	require.NoError(t, err)

	// The container stops; a last backup keeps only itself.
	c.a.docker("rm", "-f", writer)
	final, err := os.ReadFile(filepath.Join(data, "log"))
	require.NoError(t, err)
	assert.True(t, bytes.HasPrefix(final, log1), "the log as backed up while written is the log as it was at one moment")
	last := backupOf(t, c.b, "bk", loc, "--keep", "1")
	require.NotNil(t, last.Pruned)
	assert.Equal(t, []string{first.Snapshot.ID, second.Snapshot.ID}, last.Pruned.Snapshots)
	t.Logf("--keep 1: removed %d snapshots, %d objects, %d bytes", len(last.Pruned.Snapshots), last.Pruned.Objects, last.Pruned.Bytes)
	var infos []backup.Info
	require.NoError(t, json.Unmarshal([]byte(c.a.drayage("backup", "ls", loc, "--json")), &infos))
	require.Len(t, infos, 1)
	assert.Equal(t, last.Snapshot.ID, infos[0].ID)

	// The latest snapshot, on the other node, through docker run: the same tree.
	c.b.docker("volume", "create", "--driver", nodePlugin, "-o", "from="+loc, "bkr")
	out = c.b.run("--mount", mountOf("bkr"), testImage, "sh", "-c", "ls /data | wc -l; stat -c '%u:%g %a' /data/f1 /data/f2")
	assert.Equal(t, "406\n1000:1001 644\n0:0 600", out)
	restoredTree := filepath.Join(c.b.state, "volumes", "bkr", "data")
	assert.Equal(t, treeOf(t, data), treeOf(t, restoredTree), "owners, modes, times, content, hardlinks, symlinks and xattrs as backed up")
	assert.Less(t, allocated(t, filepath.Join(restoredTree, "sparse")), int64(1<<20), "the hole came back a hole")
	assert.Contains(t, xattrsOf(filepath.Join(restoredTree, "f6")), "user.origin", "the walk saw the extended attribute")

	// What is wrong is said, naming what to give.
	assert.Contains(t, c.b.drayageFails("volume", "backup", "bk"), "--to s3://BUCKET/PREFIX/")
	assert.Contains(t, c.b.drayageFails("volume", "backup", "bk", "--to", "https://example/x"), "bad backup location")
	assert.Contains(t, c.b.drayageFails("volume", "backup", "nosuch", "--to", loc), `"nosuch"`)
	assert.Contains(t, c.b.drayageFails("volume", "backup", "bk1", "--to", loc), "holds another volume's backups")
	for _, n := range []*node{c.a, c.b} {
		assert.NotContains(t, n.log(), s3Secret, "no log line shows the secret key")
	}
}

// A backup killed (SIGKILL) after storing its first chunk, and a prune killed after
// removing its first snapshot, or its unneeded chunks before its packs, leave every
// snapshot they did not mean to remove whole: listed, and restoring to its root hash;
// the next backup with --keep finishes the prune.
func TestABackupOrPruneKilledLosesNoSnapshot(t *testing.T) {
	etcd := storetest.StartEtcd(t, storetest.ServerOptions{})
	nodes := startHostCluster(t, etcd.URL, []string{"node-1"}, "node-1")
	n := nodes[0]
	s3 := seedtest.StartS3(t, "127.0.0.1:"+strconv.Itoa(storetest.FreePort(t)), s3Secret, "backups")
	secret := filepath.Join(t.TempDir(), "s3-secret")
	require.NoError(t, os.WriteFile(secret, []byte(s3Secret), 0o600))
	restart := func(failpoint string) {
		n.kill(syscall.SIGTERM)
		n.env = []string{"DRAYAGE_S3_ENDPOINT=http://" + s3.Addr, "DRAYAGE_S3_REGION=" + s3.Region,
			"DRAYAGE_S3_ACCESS_KEY=" + s3.Access, "DRAYAGE_S3_SECRET_KEY_FILE=" + secret, "DRAYAGE_FAILPOINTS=" + failpoint}
		n.start()
	}
	restart("")
	n.create(t, "db", "rows", nil)
	change := func(from int) {
		for i := from; i < from+10; i++ {
			b := bytes.Repeat([]byte(fmt.Sprintf("version %d of file %d\n", time.Now().UnixNano(), i)), 5000)
			require.NoError(t, os.WriteFile(filepath.Join(n.data("db"), fmt.Sprintf("f%03d", i)), b, 0o644))
		}
	}
	const loc = "s3://backups/db/"
	back := func(more ...string) backup.Result {
		var res backup.Result
		out := n.drayage(t, append([]string{"volume", "backup", "db", "--to", loc, "--json"}, more...)...)
		require.NoError(t, json.Unmarshal([]byte(out), &res), out)
		return res
	}
	change(0)
	change(10)
	roots := map[string]string{} // snapshot ID -> root hash of the tree it was taken of
	for range 2 {
		root, err := transfer.TreeRoot(t.Context(), n.data("db"))
		require.NoError(t, err)
		res := back()
		assert.Equal(t, root, res.Snapshot.Root)
		roots[res.Snapshot.ID] = root
		change(0)
	}
	l, err := backup.ParseLocation(loc)
	require.NoError(t, err)
	repo := backup.Open(s3.Client, l)
	whole := func(want int) {
		t.Helper()
		infos, err := repo.List(t.Context())
		require.NoError(t, err)
		require.Len(t, infos, want)
		for _, info := range infos {
			_, snap, err := repo.Load(t.Context(), info.ID)
			require.NoError(t, err)
			res, err := transfer.Restore(t.Context(), filepath.Join(t.TempDir(), "staging"), snap, repo, transfer.RestoreOptions{})
			require.NoError(t, err, "snapshot %s restores", info.ID)
			assert.Equal(t, roots[info.ID], fmt.Sprintf("%x", res.RootHash), "snapshot %s is the tree it was taken of", info.ID)
		}
	}
	killedAt := func(point string, args ...string) {
		t.Helper()
		restart(point)
		cmd := exec.Command(binary, append([]string{"--root", n.root, "volume", "backup", "db", "--to", loc}, args...)...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		require.NoError(t, cmd.Start())
		eventually(t, timeout, "the daemon to reach "+point, func() bool { return strings.Contains(n.logText(), "failpoint "+point+" reached") })
		n.kill(syscall.SIGKILL)
		require.Error(t, cmd.Wait(), "the backup stops with the daemon: %s", out.String())
		restart("")
	}

	killedAt("backup-chunk-stored")
	whole(2)

	// The next backup is saved, then its prune is killed after it removed the oldest
	// snapshot: the two newest stay.
	root, err := transfer.TreeRoot(t.Context(), n.data("db"))
	require.NoError(t, err)
	killedAt("prune-snapshot-removed", "--keep", "1")
	infos, err := repo.List(t.Context())
	require.NoError(t, err)
	require.Len(t, infos, 2)
	roots[infos[1].ID] = root
	whole(2)

	res := back("--keep", "1")
	require.NotNil(t, res.Pruned)
	assert.Len(t, res.Pruned.Snapshots, 2, "the one the killed prune kept, and the one it was made after")
	assert.Positive(t, res.Pruned.Objects, "what only the removed snapshots and the killed backup stored went")
	roots[res.Snapshot.ID] = root
	whole(1)

	// A prune killed after it removed the chunks stored on their own, before the packs:
	// the snapshot it keeps restores, the chunk only the removed snapshot held is gone,
	// and the next prune removes the packs it left. big is stored on its own (over
	// packMin); the small files go into packs.
	objects := func() int {
		n := 0
		for o := range s3.Client.ListObjects(t.Context(), "backups", minio.ListObjectsOptions{Prefix: "db/objects/", Recursive: true}) {
			require.NoError(t, o.Err)
			n++
		}
		return n
	}
	writeBig := func() {
		b := make([]byte, 1<<20)
		_, _ = rand.Read(b)
		require.NoError(t, os.WriteFile(filepath.Join(n.data("db"), "big"), b, 0o644))
	}
	writeBig()
	res = back("--keep", "1")
	roots[res.Snapshot.ID], err = transfer.TreeRoot(t.Context(), n.data("db"))
	require.NoError(t, err)
	require.Equal(t, 1, objects(), "big's chunk, on its own")
	writeBig()
	change(0)
	root, err = transfer.TreeRoot(t.Context(), n.data("db"))
	require.NoError(t, err)
	killedAt("prune-objects-removed", "--keep", "1")
	infos, err = repo.List(t.Context())
	require.NoError(t, err)
	require.Len(t, infos, 1)
	roots[infos[0].ID] = root
	whole(1)
	assert.Equal(t, 1, objects(), "the killed prune removed the old big's chunk, which only the removed snapshot held")
	again, err := repo.Prune(t.Context(), "node-1", 1)
	require.NoError(t, err)
	assert.Positive(t, again.Objects, "the packs the killed prune left")
	whole(1)
	again, err = repo.Prune(t.Context(), "node-1", 1)
	require.NoError(t, err)
	assert.Zero(t, again.Objects, "what is left is what the kept snapshot needs")
}
