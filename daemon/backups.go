package daemon

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/drayage/drayage/daemon/backup"
	"github.com/drayage/drayage/daemon/control"
	"github.com/drayage/drayage/progress"
)

// backupsRunning keeps the progress of the backups running on this node, by volume.
type backupsRunning struct {
	mu sync.Mutex
	m  map[string]*progress.Transfer
}

// start records a backup of volume as running, unless one is: the backup's progress
// callback, and done to call when it ends.
func (b *backupsRunning) start(volume, node, to string) (update func(done, total int64), done func(), err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m == nil {
		b.m = map[string]*progress.Transfer{}
	}
	if p, ok := b.m[volume]; ok {
		return nil, nil, fmt.Errorf("volume %q is being backed up on node %q to %s already (%s); wait for it, then retry", volume, node, p.To, p)
	}
	now := time.Now().UTC()
	p := &progress.Transfer{Volume: volume, Kind: progress.KindBackup, From: node, To: to, Started: now, Updated: now}
	b.m[volume] = p
	update = func(n, total int64) {
		b.mu.Lock()
		p.Bytes, p.Total, p.Updated = n, total, time.Now().UTC()
		b.mu.Unlock()
	}
	done = func() {
		b.mu.Lock()
		delete(b.m, volume)
		b.mu.Unlock()
	}
	return update, done, nil
}

// get returns the progress of the backup of volume running here, or nil.
func (b *backupsRunning) get(volume string) *progress.Transfer {
	b.mu.Lock()
	defer b.mu.Unlock()
	if p, ok := b.m[volume]; ok {
		c := *p
		return &c
	}
	return nil
}

// backupRequest asks a volume's owner to back it up.
type backupRequest struct {
	Volume string `json:"volume"`
	To     string `json:"to"`
	Keep   int    `json:"keep,omitempty"`
}

// backupProgressRequest asks a node how far its backup of a volume has come.
type backupProgressRequest struct {
	Volume string `json:"volume"`
}

// backupProgressReply answers it: nil if none runs there.
type backupProgressReply struct {
	Progress *progress.Transfer `json:"progress,omitempty"`
}

// BackupVolume backs a volume up to a location: on its owner, here or asked over the
// cluster network.
func (d *Daemon) BackupVolume(ctx context.Context, name string, r control.BackupRequest) (backup.Result, error) {
	var res backup.Result
	loc, err := backup.ParseLocation(r.To)
	if err != nil {
		return res, fmt.Errorf("volume %q: %w", name, err)
	}
	if loc.Snapshot != "" {
		return res, fmt.Errorf("volume %q: %w: --to %s names a snapshot; back up to the prefix, %s", name, backup.ErrBadLocation, r.To, backup.Location{Bucket: loc.Bucket, Prefix: loc.Prefix})
	}
	if r.Keep < 0 {
		return res, fmt.Errorf("volume %q: --keep %d: give how many snapshots to keep, 1 or more (0 keeps all)", name, r.Keep)
	}
	owner, err := d.ownerOf(ctx, name)
	if err != nil {
		return res, err
	}
	if owner != d.cfg.Name {
		return res, d.forward(ctx, "backup", fmt.Sprintf("back volume %q up on node %q, which holds it", name, owner), owner, "BackupHere", &backupRequest{Volume: name, To: loc.String(), Keep: r.Keep}, &res)
	}
	return d.backupHere(ctx, &backupRequest{Volume: name, To: loc.String(), Keep: r.Keep})
}

// ownerOf is the node that holds volume name.
func (d *Daemon) ownerOf(ctx context.Context, name string) (string, error) {
	info, err := d.vols.Lookup(ctx, name)
	if err != nil {
		return "", err
	}
	return info.Node, nil
}

// backupHere backs up a volume this node holds.
func (d *Daemon) backupHere(ctx context.Context, r *backupRequest) (backup.Result, error) {
	var res backup.Result
	loc, err := backup.ParseLocation(r.To)
	if err != nil {
		return res, fmt.Errorf("volume %q: %w", r.Volume, err)
	}
	dir, err := d.vols.BackupDir(ctx, r.Volume)
	if err != nil {
		return res, err
	}
	c, err := d.seeds.fetch.S3Client()
	if err != nil {
		return res, fmt.Errorf("volume %q on node %q: %w", r.Volume, d.cfg.Name, err)
	}
	update, done, err := d.backups.start(r.Volume, d.cfg.Name, loc.String())
	if err != nil {
		return res, err
	}
	defer done()
	d.log.Info("backing up a volume", "volume", r.Volume, "to", loc.String(), "keep", r.Keep)
	res, err = backup.Open(c, loc).Run(ctx, backup.Request{Volume: r.Volume, Node: d.cfg.Name, Dir: dir, Keep: r.Keep, Progress: update})
	if err != nil {
		d.log.Warn("a backup of a volume failed", "volume", r.Volume, "to", loc.String(), "err", err)
		return res, fmt.Errorf("node %q: %w", d.cfg.Name, err)
	}
	d.log.Info("backed up a volume", "volume", r.Volume, "to", loc.String(), "snapshot", res.Snapshot.ID, "root", res.Snapshot.Root,
		"files", res.Snapshot.Files, "bytes", res.Snapshot.Size, "new_bytes", res.Snapshot.NewBytes, "read", res.Read,
		"reused_files", res.Reused, "changed_while_read", len(res.Changed), "took", res.Took.Round(time.Millisecond))
	if res.Pruned != nil {
		d.log.Info("pruned a backup location", "volume", r.Volume, "at", loc.String(), "keep", r.Keep,
			"snapshots_removed", len(res.Pruned.Snapshots), "objects_removed", res.Pruned.Objects, "bytes_removed", res.Pruned.Bytes)
	}
	return res, nil
}

// BackupProgress is how far the running backup of a volume has come, on its owner, or
// nil if none runs.
func (d *Daemon) BackupProgress(ctx context.Context, name string) (*progress.Transfer, error) {
	if p := d.backups.get(name); p != nil {
		return p, nil
	}
	owner, err := d.ownerOf(ctx, name)
	if err != nil || owner == d.cfg.Name {
		return nil, err
	}
	var reply backupProgressReply
	err = d.forward(ctx, "backup", fmt.Sprintf("ask node %q how far the backup of volume %q has come", owner, name), owner, "BackupProgress", &backupProgressRequest{Volume: name}, &reply)
	return reply.Progress, err
}

// ListBackups lists the snapshots at a backup location.
func (d *Daemon) ListBackups(ctx context.Context, at string) ([]backup.Info, error) {
	loc, err := backup.ParseLocation(at)
	if err != nil {
		return nil, err
	}
	c, err := d.seeds.fetch.S3Client()
	if err != nil {
		return nil, fmt.Errorf("node %q: %w", d.cfg.Name, err)
	}
	infos, err := backup.Open(c, loc).List(ctx)
	if err != nil {
		return nil, fmt.Errorf("node %q: %w", d.cfg.Name, err)
	}
	return infos, nil
}
