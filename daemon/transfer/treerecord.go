package transfer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
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
// A record that can't be read is no record: the tree is walked.

// TreePath is where the record of the tree at dir is kept: beside it, never in it.
func TreePath(dir string) string { return filepath.Clean(dir) + ".tree" }

const treeMagic = "drayage-tree 1\n"

// treeRecord is a tree as read, and where the change log stood when it was.
type treeRecord struct {
	tree tree
	log  string // "": a tree only drayage writes
	seq  uint64
}

func (r treeRecord) encode() []byte {
	b := []byte(treeMagic)
	b = appendString(b, r.log)
	b = binary.AppendUvarint(b, r.seq)
	m := encodeManifest(r.tree.entries)
	b = binary.AppendUvarint(b, uint64(len(m)))
	b = append(b, m...)
	for _, c := range r.tree.ctimes {
		b = binary.AppendVarint(b, c)
	}
	return b
}

func decodeTree(b []byte) (treeRecord, error) {
	rest, ok := bytes.CutPrefix(b, []byte(treeMagic))
	if !ok {
		return treeRecord{}, errors.New("not a tree record")
	}
	d := decoder{b: rest}
	var r treeRecord
	r.log = d.string(64)
	r.seq = d.uvarint()
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
	r, err := decodeTree(b)
	return r, err == nil
}

// saveTree writes the record of the tree at dir through a temporary file and a rename.
// Call it once the tree is as the record says (for a tree only drayage writes, once it
// is on disk).
func saveTree(dir string, r treeRecord) error {
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
