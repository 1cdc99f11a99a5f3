package transfer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// Stored hashes. The root hash of a transfer covers every file of the tree, also the ones
// the receiver already had (an interrupted pull's staging, an older copy): a file reused
// by its size and modification time is verified against a hash. Reading every such file
// on every transfer would make a delta cost a full read on both ends, so each end keeps
// the hashes of its tree's files beside it (IndexPath): a file whose size, modification
// time and change time are still those recorded has the recorded hash. The change time
// can't be set by anyone, so a file written since, even with its times put back, is read
// and hashed again.
//
// A hash written before its file's content was on disk is worth nothing after a power
// cut. An index says whether its tree was synced before it was written; one that was not
// is trusted only until the machine restarts (the boot ID it records tells).

// IndexPath is where the stored hashes of the tree at dir are kept: beside it, never in
// it, so they are not part of the tree.
func IndexPath(dir string) string { return filepath.Clean(dir) + ".b3" }

// fileStamp is what must not have changed for a stored hash to hold.
type fileStamp struct {
	size, mtime, ctime int64
}

// hashIndex is a tree's stored hashes, by path.
type hashIndex map[string]storedHash

type storedHash struct {
	fileStamp
	sum [32]byte
	// chunks are the hashes of the file's deltaChunk chunks, for a large file received
	// whole or by chunks (delta.go): a next delta offers them without reading the file.
	chunks []byte
}

// lookup returns the stored hash of path if the file still has stamp.
func (x hashIndex) lookup(path string, stamp fileStamp) ([32]byte, bool) {
	h, ok := x.get(path, stamp)
	return h.sum, ok
}

// get returns all that is stored of path (its hash, its chunks' hashes) if the file
// still has stamp.
func (x hashIndex) get(path string, stamp fileStamp) (storedHash, bool) {
	h, ok := x[path]
	if !ok || h.fileStamp != stamp {
		return storedHash{}, false
	}
	return h, true
}

const indexMagic = "drayage-hashes 2\n"

// bootID identifies this boot of the machine ("" if the kernel does not say).
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// loadIndex reads the stored hashes at path. A missing, unreadable or untrusted index
// (written before a sync, on an earlier boot) is empty: every file is hashed again.
func loadIndex(path string) hashIndex {
	b, err := os.ReadFile(path)
	if err != nil {
		return hashIndex{}
	}
	x, err := decodeIndex(b, bootID())
	if err != nil {
		return hashIndex{}
	}
	return x
}

func decodeIndex(b []byte, boot string) (hashIndex, error) {
	rest, ok := bytes.CutPrefix(b, []byte(indexMagic))
	if !ok {
		return nil, errors.New("not a hash index")
	}
	d := decoder{b: rest}
	synced := d.byte() == 1
	written := d.string(64)
	if !synced && (written == "" || written != boot) {
		return nil, errors.New("written before its tree was synced, on another boot")
	}
	n := d.uvarint()
	if n > uint64(len(d.b))/36 {
		return nil, errors.New("hash index truncated")
	}
	x := make(hashIndex, n)
	for range n {
		p := d.string(maxPath)
		var h storedHash
		h.size, h.mtime, h.ctime = d.varint(), d.varint(), d.varint()
		if len(d.b) < 32 {
			return nil, errors.New("hash index truncated")
		}
		copy(h.sum[:], d.b)
		d.b = d.b[32:]
		if c := d.uvarint(); c > 0 {
			if c%32 != 0 || c > uint64(len(d.b)) {
				return nil, errors.New("hash index truncated")
			}
			h.chunks = bytes.Clone(d.b[:c])
			d.b = d.b[c:]
		}
		if d.err != nil {
			return nil, d.err
		}
		x[p] = h
	}
	return x, d.err
}

func (x hashIndex) encode(synced bool, boot string) []byte {
	b := []byte(indexMagic)
	if synced {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = appendString(b, boot)
	b = binary.AppendUvarint(b, uint64(len(x)))
	for _, p := range slices.Sorted(func(yield func(string) bool) {
		for p := range x {
			if !yield(p) {
				return
			}
		}
	}) {
		h := x[p]
		b = appendString(b, p)
		b = binary.AppendVarint(b, h.size)
		b = binary.AppendVarint(b, h.mtime)
		b = binary.AppendVarint(b, h.ctime)
		b = append(b, h.sum[:]...)
		b = binary.AppendUvarint(b, uint64(len(h.chunks)))
		b = append(b, h.chunks...)
	}
	return b
}

// save writes the index at path through a synced temporary file and a rename. synced
// says the tree's content was on disk before the index was made.
func (x hashIndex) save(path string, synced bool) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("store hashes: %w", err)
	}
	_, err = f.Write(x.encode(synced, bootID()))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("store hashes: %w", err)
	}
	return nil
}

// RemoveIndex deletes the stored hashes of the tree at dir, if any.
func RemoveIndex(dir string) error {
	err := os.Remove(IndexPath(dir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// stampOf is the stamp of a file as fstat or statx saw it.
func stampOf(st *unix.Stat_t) fileStamp {
	return fileStamp{size: st.Size, mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano()}
}
