package transfer

import (
	"context"
	"encoding/hex"
	"slices"

	"github.com/drayage/drayage/daemon/metrics"
)

// Drifted walks the tree of a volume at dir, which containers may be writing, and
// reports whether it differs from what its record and the change log say it is: what a
// write through a shared memory map does makes no event, so a mounted volume whose log
// shows no change is checked this way now and then before its replicas are told it is
// unchanged. No record of the log's, or a change logged since the record, counts as a
// difference. The walk becomes the tree's record: a sync that follows reads the
// difference from it, without a second walk.
func Drifted(ctx context.Context, dir, volume string, changes ChangeLog, m *metrics.Metrics) (bool, error) {
	log, seq := changes.Position() // before the walk: a change during it is in the next
	r, known := loadTree(dir)
	t, err := walk(ctx, dir)
	if err != nil {
		return true, err
	}
	m.TreeRead(metrics.TreeChecked, t.read)
	if t.links == 0 && len(t.mounts) == 0 {
		_ = saveTree(dir, treeRecord{tree: t, log: log, seq: seq})
	}
	if !known || r.log != log {
		return true, nil
	}
	if paths, ok := changes.Since(volume, r.log, r.seq); !ok || len(paths) > 0 {
		return true, nil
	}
	return !sameTree(r.tree, t), nil
}

// sameTree reports whether two readings of a tree found the same entries, changed at the
// same times (a change of an entry's content, metadata or extended attributes changes
// its change time).
func sameTree(a, b tree) bool {
	return slices.Equal(a.ctimes, b.ctimes) && slices.EqualFunc(a.entries, b.entries, func(x, y entry) bool {
		return x.Path == y.Path && x.Kind == y.Kind && x.Mode == y.Mode && x.UID == y.UID && x.GID == y.GID &&
			x.Size == y.Size && x.MTime == y.MTime && x.Target == y.Target && x.Rdev == y.Rdev
	})
}

// TreeRoot is the root hash (hex) of the tree at dir, as a transfer of it would send it:
// what a node that held a volume before a failover compares with the root hash the
// promoted replica had, to learn whether its copy holds writes the replica lacks. The
// hashes of files unchanged since they were last hashed are not read again.
func TreeRoot(ctx context.Context, dir string) (string, error) {
	src, err := newSource(ctx, dir, reading{})
	if err != nil {
		return "", err
	}
	defer src.Close()
	if err := src.Want(nil); err != nil {
		return "", err
	}
	sum, err := src.RootHash()
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(sum[:]), nil
}
