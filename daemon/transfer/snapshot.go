package transfer

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"iter"
)

// A snapshot is a tree as a backup keeps it: the manifest a transfer would send, and for
// each file its content hash and the hashes of the chunks (SnapshotChunk bytes each, the
// last one shorter) its content was cut into and stored under. Its root hash is the one a
// transfer of the tree computes, so a restore checks the tree it made against it.

// SnapshotChunk is the size of the pieces a backup cuts files into: a file is stored as
// its chunks, each once, by its BLAKE3 hash, so a large file that changed in a few places
// adds only the chunks that did, and runs of zeros (holes) are stored once for every file.
const SnapshotChunk = 4 << 20

const snapshotMagic = "drayage-snapshot 1\n"

// Snapshot is one backup of a tree.
type Snapshot struct {
	entries []entry
	// files holds, for every regular file by manifest index, its content hash and chunks.
	files map[uint32]snapshotFile
	root  [32]byte
}

type snapshotFile struct {
	sum    [32]byte
	chunks [][32]byte
}

// Root is the snapshot's root hash, in hex: what 'drayage backup ls' shows and a restore
// checks.
func (s *Snapshot) Root() string { return hex.EncodeToString(s.root[:]) }

// Entries counts the snapshot's entries (files, directories, links, ...).
func (s *Snapshot) Entries() int { return len(s.entries) }

// Files counts its regular files (hardlinks not counted twice).
func (s *Snapshot) Files() int { return len(s.files) }

// Size is the bytes of its files' content.
func (s *Snapshot) Size() int64 {
	var n int64
	for i := range s.files {
		n += s.entries[i].Size
	}
	return n
}

// Chunks yields the hash of every chunk the snapshot's files are stored as (a chunk
// several files share, once per file).
func (s *Snapshot) Chunks() iter.Seq[[32]byte] {
	return func(yield func([32]byte) bool) {
		for _, f := range s.files {
			for _, c := range f.chunks {
				if !yield(c) {
					return
				}
			}
		}
	}
}

// byContent maps content hashes to the chunks that content is stored as: a next backup
// takes a file whose stored hash is one of them from here, without reading it.
func (s *Snapshot) byContent() map[[32]byte][][32]byte {
	m := make(map[[32]byte][][32]byte, len(s.files))
	for _, f := range s.files {
		m[f.sum] = f.chunks
	}
	return m
}

// chunksFor is how many chunks a file of size bytes is cut into.
func chunksFor(size int64) int {
	return int((size + SnapshotChunk - 1) / SnapshotChunk)
}

// MarshalBinary encodes the snapshot: the magic line, the manifest (its length, then as
// encodeManifest writes it), the root hash, then for each regular file in manifest order
// its content hash and its chunks' hashes (their count follows from the file's size).
func (s *Snapshot) MarshalBinary() ([]byte, error) {
	m := encodeManifest(s.entries)
	b := make([]byte, 0, len(snapshotMagic)+binary.MaxVarintLen64+len(m)+32+len(s.files)*64)
	b = append(b, snapshotMagic...)
	b = binary.AppendUvarint(b, uint64(len(m)))
	b = append(b, m...)
	b = append(b, s.root[:]...)
	for i, e := range s.entries {
		if e.Kind != kindFile {
			continue
		}
		f := s.files[uint32(i)]
		b = append(b, f.sum[:]...)
		for _, c := range f.chunks {
			b = append(b, c[:]...)
		}
	}
	return b, nil
}

// UnmarshalSnapshot decodes what MarshalBinary wrote. It checks the encoding only (a
// snapshot read from object storage is untrusted): Restore checks each entry as a pull
// does, and the tree it makes against the root hash. Errors wrap ErrHostile.
func UnmarshalSnapshot(b []byte) (*Snapshot, error) {
	bad := func(format string, args ...any) (*Snapshot, error) {
		return nil, fmt.Errorf("%w: snapshot: %s", ErrHostile, fmt.Sprintf(format, args...))
	}
	if len(b) < len(snapshotMagic) || string(b[:len(snapshotMagic)]) != snapshotMagic {
		return bad("not a drayage snapshot (or of a later version)")
	}
	b = b[len(snapshotMagic):]
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return bad("manifest length %d beyond its %d bytes", n, len(b))
	}
	entries, err := decodeManifest(b[k : k+int(n)])
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	b = b[k+int(n):]
	s := &Snapshot{entries: entries, files: map[uint32]snapshotFile{}}
	if len(b) < 32 {
		return bad("no root hash")
	}
	b = b[copy(s.root[:], b):]
	for i, e := range entries {
		if e.Kind != kindFile {
			continue
		}
		if e.Size < 0 {
			return bad("%s has size %d", e.Path, e.Size)
		}
		need := 32 * (1 + int64(chunksFor(e.Size)))
		if int64(len(b)) < need {
			return bad("%s: its chunk hashes are missing", e.Path)
		}
		f := snapshotFile{chunks: make([][32]byte, chunksFor(e.Size))}
		b = b[copy(f.sum[:], b):]
		for c := range f.chunks {
			b = b[copy(f.chunks[c][:], b):]
		}
		s.files[uint32(i)] = f
	}
	if len(b) != 0 {
		return bad("%d bytes after the last file", len(b))
	}
	return s, nil
}
