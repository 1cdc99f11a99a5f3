package transfer

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/drayage/drayage/daemon/metrics"
)

// Tree records. Reading a tree's metadata costs a system call or more per entry; a
// million-file volume takes seconds to walk, and a sync that walks it costs that however
// little changed. So a tree that was walked, or that a transfer made, has what was found
// kept beside it (TreePath): its entries and their change times. The next transfer
// starts from the record instead of a walk:
//
//   - A tree only drayage writes (staging, a replica) has a record with no change log
//     position. It holds as long as the tree is not touched: whatever changes such a
//     tree removes the record first (dropTree), and what finishes a tree writes a new
//     one once the tree is on disk. A tree that becomes a volume containers write drops
//     its record (DropTree; localstore does it when it installs a volume).
//   - A volume containers write has a record with the change tracker's position as of
//     its reading (see ChangeLog): the record and the paths changed since make the tree
//     as it is now (rescan.go). A record of another tracker (an earlier run of the
//     daemon) is worth nothing.
//
// A record names the directory it describes by its inode: the two trees a replica sync
// exchanges (localstore.InstallReplica) swap their records after the trees, and a crash
// in between leaves each record beside the other tree, where it is refused.
//
// A record that can't be read is no record: the tree is walked. So is one written before
// its tree was on disk, after the machine restarted (its boot ID tells).

// TreePath is where the record of the tree at dir is kept: beside it, never in it.
func TreePath(dir string) string { return filepath.Clean(dir) + ".tree" }

const treeMagic = "drayage-tree 2\n"

// treeRecord is a tree as read, and where the change log stood when it was.
type treeRecord struct {
	tree tree
	log  string // "": a tree only drayage writes
	seq  uint64
	// synced: the tree was on disk before the record was written.
	synced bool
	// ino is the tree's root directory's inode number.
	ino uint64
	// deltas are the large files the pull that made the tree changed in place, by path:
	// what each was before, and the parts the pull wrote. The tree it replaced (a
	// replica's staging tree, after the swap) is brought up to it by copying those parts.
	deltas map[string]fileDelta
}

// fileDelta is how a file changed in place: from a file of baseSize bytes modified at
// baseMTime, the parts (offset, length) written.
type fileDelta struct {
	baseSize, baseMTime int64
	parts               [][2]int64
}

func (r treeRecord) encode() []byte {
	b := []byte(treeMagic)
	if r.synced {
		b = appendString(b, "")
	} else {
		b = appendString(b, bootID())
	}
	b = appendString(b, r.log)
	b = binary.AppendUvarint(b, r.seq)
	b = binary.AppendUvarint(b, r.ino)
	m := encodeManifest(r.tree.entries)
	b = binary.AppendUvarint(b, uint64(len(m)))
	b = append(b, m...)
	for _, c := range r.tree.ctimes {
		b = binary.AppendVarint(b, c)
	}
	b = binary.AppendUvarint(b, uint64(len(r.deltas)))
	for p, d := range r.deltas {
		b = appendString(b, p)
		b = binary.AppendVarint(b, d.baseSize)
		b = binary.AppendVarint(b, d.baseMTime)
		b = binary.AppendUvarint(b, uint64(len(d.parts)))
		for _, part := range d.parts {
			b = binary.AppendVarint(b, part[0])
			b = binary.AppendVarint(b, part[1])
		}
	}
	return b
}

func decodeTree(b []byte, boot string) (treeRecord, error) {
	rest, ok := bytes.CutPrefix(b, []byte(treeMagic))
	if !ok {
		return treeRecord{}, errors.New("not a tree record")
	}
	d := decoder{b: rest}
	var r treeRecord
	written := d.string(64)
	if r.synced = written == ""; !r.synced && written != boot {
		return treeRecord{}, errors.New("written before its tree was on disk, on another boot")
	}
	r.log = d.string(64)
	r.seq = d.uvarint()
	r.ino = d.uvarint()
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		return treeRecord{}, errors.New("tree record truncated")
	}
	entries, err := decodeManifest(d.b[:n])
	if err != nil {
		return treeRecord{}, err
	}
	d.b = d.b[n:]
	ctimes := make([]int64, len(entries))
	for i := range ctimes {
		ctimes[i] = d.varint()
	}
	n = d.uvarint()
	if n > uint64(len(d.b)) {
		return treeRecord{}, errors.New("tree record damaged")
	}
	r.deltas = make(map[string]fileDelta, n)
	for range n {
		p := d.string(maxPath)
		fd := fileDelta{baseSize: d.varint(), baseMTime: d.varint()}
		k := d.uvarint()
		if k > uint64(len(d.b)) {
			return treeRecord{}, errors.New("tree record damaged")
		}
		for range k {
			fd.parts = append(fd.parts, [2]int64{d.varint(), d.varint()})
		}
		r.deltas[p] = fd
	}
	if d.err != nil || len(d.b) != 0 || len(entries) == 0 || entries[0].Path != "." {
		return treeRecord{}, errors.New("tree record damaged")
	}
	r.tree = tree{entries: entries, ctimes: ctimes}
	for _, e := range entries {
		if e.Kind == kindHardlink {
			r.tree.links++
		}
	}
	return r, nil
}

// loadTree reads the record of the tree at dir; false if there is none fit to use.
func loadTree(dir string) (treeRecord, bool) {
	b, err := os.ReadFile(TreePath(dir))
	if err != nil {
		return treeRecord{}, false
	}
	r, err := decodeTree(b, bootID())
	var st unix.Stat_t
	if err != nil || unix.Lstat(dir, &st) != nil || st.Ino != r.ino {
		return treeRecord{}, false
	}
	return r, true
}

// saveTree writes the record of the tree at dir through a temporary file and a rename.
// Call it once the tree is as the record says (for a tree only drayage writes, once it
// is on disk).
func saveTree(dir string, r treeRecord) error {
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return fmt.Errorf("record tree %s: %w", dir, err)
	}
	r.ino = st.Ino
	f, err := os.CreateTemp(filepath.Dir(filepath.Clean(dir)), filepath.Base(TreePath(dir))+".*")
	if err != nil {
		return fmt.Errorf("record tree %s: %w", dir, err)
	}
	_, err = f.Write(r.encode())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), TreePath(dir))
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("record tree %s: %w", dir, err)
	}
	return nil
}

// DropTree removes the record of the tree at dir, durably, before the tree is changed:
// a record that outlived a change to its tree would be believed.
func DropTree(dir string) error {
	err := os.Remove(TreePath(dir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return syncDir(filepath.Dir(filepath.Clean(dir)))
}

// MoveTree moves the record of the tree at from to the tree at to, which has just moved
// there (or removes to's, if from has none).
func MoveTree(from, to string) error {
	err := os.Rename(TreePath(from), TreePath(to))
	if errors.Is(err, fs.ErrNotExist) {
		return DropTree(to)
	}
	return err
}

// ChangeLog says what changed in volumes (package changes keeps it, from the kernel).
type ChangeLog interface {
	// Position is where the log stands now: a tree read after the call holds every
	// change logged up to it. log names the log.
	Position() (log string, seq uint64)
	// Since lists the paths of volume (relative to its root) changed after position
	// (log, seq); false if the log can't tell (another log's position, or one from
	// before events were lost).
	Since(volume, log string, seq uint64) ([]string, bool)
}

// reading says how a sender reads a volume's tree.
type reading struct {
	volume string
	// changes, if set, keeps a record of the tree beside it and reads only what changed
	// since the record; nil walks the tree.
	changes ChangeLog
	// metrics counts the reading (TreeRead).
	metrics *metrics.Metrics
	// walk reads the tree whole all the same (and records it, with changes).
	walk bool
}

// readVolume reads the tree of a volume at dir, which containers may be writing: from
// its record and the paths changed since, if how has a change log and the record is of
// that log, or else by a walk (recorded for the next time). It says which it did
// (metrics.TreeWalked, metrics.TreeFromChanges) and, for a walk, why.
func readVolume(ctx context.Context, dir string, how reading) (t tree, via, why string, err error) {
	via = metrics.TreeWalked
	defer func() {
		if err == nil {
			how.metrics.TreeRead(via, t.read)
		}
	}()
	if how.changes == nil {
		t, err = walk(ctx, dir)
		return t, via, "no change log", err
	}
	log, seq := how.changes.Position() // before the reading: a change during it is in the next
	r, ok := loadTree(dir)
	switch {
	case how.walk:
		why = "asked to"
	case !ok:
		why = "no record"
	case r.log != log:
		why = "a record of another change log"
	default:
		paths, ok := how.changes.Since(how.volume, r.log, r.seq)
		if !ok {
			why = "the change log can't tell"
			break
		}
		rt, err := rescan(ctx, dir, r.tree, paths)
		if err == nil {
			_ = saveTree(dir, treeRecord{tree: rt, log: log, seq: seq})
			return rt, metrics.TreeFromChanges, "", nil
		}
		if !errors.Is(err, errRescan) {
			return tree{}, via, "", err
		}
		why = "hard links or mount points"
	}
	t, err = walk(ctx, dir)
	if err == nil && t.links == 0 && len(t.mounts) == 0 {
		_ = saveTree(dir, treeRecord{tree: t, log: log, seq: seq})
	}
	return t, via, why, err
}
