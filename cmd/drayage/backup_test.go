package main

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/daemon/backup"
	"github.com/drayage/drayage/daemon/control"
	"github.com/drayage/drayage/progress"
)

// backupNodes answers backups with fixed results, and remembers what it was asked.
type backupNodes struct {
	fakeNodes
	res   backup.Result
	infos []backup.Info
	asked *control.BackupRequest
	at    *string
}

func (n backupNodes) BackupVolume(_ context.Context, _ string, r control.BackupRequest) (backup.Result, error) {
	*n.asked = r
	return n.res, nil
}

func (backupNodes) BackupProgress(context.Context, string) (*progress.Transfer, error) {
	return nil, nil
}

func (n backupNodes) ListBackups(_ context.Context, at string) ([]backup.Info, error) {
	*n.at = at
	return n.infos, nil
}

func TestBackupSaysWhatItStoredAndListsSnapshots(t *testing.T) {
	root := t.TempDir()
	at := time.Date(2026, 12, 3, 13, 55, 46, 0, time.UTC)
	snap := backup.Info{ID: "20261203-135546.793-7570d288", Time: at, Volume: "db", Node: "node-a", Files: 402, Size: 15 << 20, NewBytes: 86 << 10}
	nodes := backupNodes{
		res: backup.Result{Location: "s3://backups/db/", Snapshot: snap, Changed: []string{"log"},
			Pruned: &backup.Pruned{Snapshots: []string{"x"}, Objects: 3, Bytes: 8 << 20}, Took: 412 * time.Millisecond},
		infos: []backup.Info{snap}, asked: &control.BackupRequest{}, at: new(string),
	}
	serveControl(t, root, nodes)

	out, err := run(t, root, "volume", "backup", "db", "--to", "s3://backups/db/", "--keep", "7")
	require.NoError(t, err)
	assert.Equal(t, control.BackupRequest{To: "s3://backups/db/", Keep: 7}, *nodes.asked)
	assert.Equal(t, "backed up volume db on node node-a to s3://backups/db/ as snapshot 20261203-135546.793-7570d288: 402 files, 15.0 MiB, 86.0 KiB new, in 412ms\n"+
		"1 files changed each time they were read and are kept as last read: log\n"+
		"pruned 1 snapshots and 3 objects (8.0 MiB)\n", out)

	out, err = run(t, root, "volume", "backup", "db", "--to", "s3://backups/db/", "--json")
	require.NoError(t, err)
	var got backup.Result
	require.NoError(t, json.Unmarshal([]byte(out), &got), out)
	assert.Equal(t, nodes.res.Snapshot.ID, got.Snapshot.ID)

	out, err = run(t, root, "backup", "ls", "s3://backups/db/")
	require.NoError(t, err)
	assert.Equal(t, "s3://backups/db/", *nodes.at)
	assert.Contains(t, out, "SNAPSHOT")
	assert.Contains(t, out, "20261203-135546.793-7570d288")
	assert.Contains(t, out, "402")
	assert.Contains(t, out, "86.0 KiB")

	_, err = run(t, root, "volume", "backup", "db")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "--to s3://BUCKET/PREFIX/")
}
