package transfer

import (
	"context"
	"encoding/hex"
	"os"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/drayage/drayage/daemon/metrics"
)

// Drifted reports whether the tree of a volume at dir, which containers may be writing,
// differs from what its record and the change log say it is. What a write through a
// shared memory map does makes no event, so a mounted volume whose log shows no change is
// checked this way now and then before its replicas are told it is unchanged. Such a
// write can only change a file the record lists (creating, removing, renaming, resizing
// or any other write makes an event): so when the log shows nothing since the record,
// only those files are looked at, one stat each, and no directory is read. Otherwise, or
// if a file differs, the tree is walked and the walk becomes its record: a sync that
// follows reads the difference from it, without a second walk. No record of the log's,
// or a change logged since the record, counts as a difference.
func Drifted(ctx context.Context, dir, volume string, changes ChangeLog, m *metrics.Metrics) (bool, error) {
	log, seq := changes.Position() // before the reading: a change during it is in the next
	r, known := loadTree(dir)
	quiet := false // the log vouches for the record, and shows no change since
	if known && r.log == log {
		paths, ok := changes.Since(volume, r.log, r.seq)
		quiet = ok && len(paths) == 0
	}
	if quiet {
		same, read, err := filesUnchanged(ctx, dir, r.tree)
		m.TreeRead(metrics.TreeChecked, read)
		if err != nil {
			return true, err
		}
		if same {
			return false, nil
		}
	}
	t, err := walk(ctx, dir)
	if err != nil {
		return true, err
	}
	m.TreeRead(metrics.TreeChecked, t.read)
	if t.links == 0 && len(t.mounts) == 0 {
		_ = saveTree(dir, treeRecord{tree: t, log: log, seq: seq})
	}
	return !quiet || !sameTree(r.tree, t), nil
}

// filesUnchanged stats each non-empty file of t, an earlier reading of the tree at root,
// and reports whether all are as t says (size, modification and change time), and how
// many it read.
func filesUnchanged(ctx context.Context, root string, t tree) (same bool, read int, err error) {
	r, err := os.OpenRoot(root)
	if err != nil {
		return false, 0, err
	}
	defer r.Close()
	dirs := newDirCache(r, false)
	defer dirs.close()
	for i, e := range t.entries {
		if e.Kind != kindFile || e.Size == 0 {
			continue
		}
		if read%1024 == 0 && ctx.Err() != nil {
			return false, read, ctx.Err()
		}
		d, base, release, err := dirs.split(e.Path)
		if err != nil {
			return false, read, nil // its directory is gone or replaced: the walk tells
		}
		st, _, err := statAt(d.fd, base, unix.AT_SYMLINK_NOFOLLOW)
		release()
		read++
		if err != nil || st.Size != e.Size || st.Mtim.Nano() != e.MTime || st.Ctim.Nano() != t.ctimes[i] {
			return false, read, nil
		}
	}
	return true, read, nil
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
