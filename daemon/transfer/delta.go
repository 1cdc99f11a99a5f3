package transfer

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/zeebo/blake3"
	"golang.org/x/sys/unix"
)

// Chunk-level delta (protocol 3). A large file that changed in place — a database, a
// disk image — differs from the receiver's older copy in a few places. Before Want, the
// receiver sends, for each wanted file of at least deltaMin bytes that its staging tree
// already holds, the BLAKE3 hash of each deltaChunk-sized chunk of its copy (Basis). The
// sender reads the whole file, hashes each chunk, and sends a chunk whose hash the
// receiver has as frameSame (its length, no content), the others as data. The receiver
// keeps its bytes there, and reads them into the file's hash: the whole file is still
// verified end to end against the sender's hash.
//
// Chunks are fixed-size: an in-place write changes the chunks it touches and no others,
// which is what databases and images do; an insertion shifts every later chunk and sends
// the rest of the file (content-defined chunks would find the shifted ones, at the cost
// of hashing with a rolling window on both ends). 64 KiB keeps the hash list at 1/2048
// of the file (128 KiB for a 256 MiB file) and a 4 KiB write to at most 128 KiB sent.

const (
	// deltaChunk is the size of the chunks compared.
	deltaChunk = 64 << 10
	// deltaMin is the smallest file sent by chunks: smaller ones cost little whole.
	deltaMin = 1 << 20
	// maxBasisHashes bounds the chunk hashes a receiver sends for one transfer (4 GiB of
	// files per 2 MiB of hashes... 64 MiB of hashes for 128 GiB of changed large files).
	maxBasisHashes = 2 << 20
)

const methodBasis = "Basis"

// basisRequest gives the sender the chunk hashes of the receiver's copies of wanted
// files.
type basisRequest struct {
	Transfer string      `json:"transfer"`
	Files    []basisFile `json:"files"`
}

// basisFile is the receiver's copy of one wanted file: the 32-byte BLAKE3 hash of each
// of its chunks, in order.
type basisFile struct {
	Index  uint32 `json:"index"`
	Hashes []byte `json:"hashes"`
}

// chunkHashes hashes each deltaChunk of the first size bytes of the file fd.
func chunkHashes(ctx context.Context, fd int, size int64) ([]byte, error) {
	out := make([]byte, 0, (size+deltaChunk-1)/deltaChunk*32)
	buf := make([]byte, deltaChunk)
	for off := int64(0); off < size; off += deltaChunk {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n := int(min(deltaChunk, size-off))
		if err := preadFull(fd, buf[:n], off); err != nil {
			return nil, err
		}
		sum := blake3.Sum256(buf[:n])
		out = append(out, sum[:]...)
	}
	return out, nil
}

// preadFull reads all of b at off; a file shorter than that is an error.
func preadFull(fd int, b []byte, off int64) error {
	for len(b) > 0 {
		n, err := unix.Pread(fd, b, off)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return errShort
		}
		b, off = b[n:], off+int64(n)
	}
	return nil
}

var errShort = errors.New("shorter than expected")

// chunkBasis hashes the chunks of staging's copies of the wanted large files, for
// Basis, several files at once, and notes which files may then arrive partly as
// frameSame. A copy that can't be read is left out: that file is sent whole.
func (s *sink) chunkBasis(ctx context.Context, present map[string]presentEntry) ([]basisFile, error) {
	type candidate struct {
		index uint32
		size  int64
	}
	var cands []candidate
	total := 0
	for _, i := range s.Wanted() {
		e := s.entries[i]
		h, ok := present[e.Path]
		if e.Size < deltaMin || !ok || h.Kind != kindFile || h.Size < deltaChunk {
			continue
		}
		size := min(h.Size, e.Size)
		if total += int(size / deltaChunk); total > maxBasisHashes {
			break
		}
		cands = append(cands, candidate{i, size})
	}
	hashes := make([][]byte, len(cands))
	err := forEach(ctx, len(cands), func(k int) error {
		h, err := s.hashStaged(ctx, s.entries[cands[k].index].Path, cands[k].size)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err == nil {
			hashes[k] = h
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []basisFile
	for k, c := range cands {
		if hashes[k] != nil {
			out = append(out, basisFile{Index: c.index, Hashes: hashes[k]})
			s.basis[c.index] = c.size
		}
	}
	return out, nil
}

// chunkSummer hashes what is written to it chunk by chunk (deltaChunk), as chunkHashes
// hashes a file.
type chunkSummer struct {
	cur *blake3.Hasher
	n   int // bytes in cur
	out []byte
}

func (c *chunkSummer) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		if c.cur == nil {
			c.cur = blake3.New()
		}
		k := min(len(p), deltaChunk-c.n)
		_, _ = c.cur.Write(p[:k])
		c.n += k
		p = p[k:]
		if c.n == deltaChunk {
			c.out = c.cur.Sum(c.out)
			c.cur.Reset()
			c.n = 0
		}
	}
	return total, nil
}

// Sum is the chunk hashes of all that was written, the last chunk short if it is.
func (c *chunkSummer) Sum() []byte {
	if c.n > 0 {
		return c.cur.Sum(c.out)
	}
	return c.out
}

// hashStaged hashes the chunks of staging's file p, a regular file with one link (one
// that create would reuse, and write in place): the stored ones if its stamp is still
// theirs, or else by reading it.
func (s *sink) hashStaged(ctx context.Context, p string, size int64) ([]byte, error) {
	d, base, release, err := s.dirs.split(p)
	if err != nil {
		return nil, err
	}
	defer release()
	fd, err := d.open(base, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Nlink != 1 {
		return nil, fmt.Errorf("%s: not a file written in place", p)
	}
	// Stored for the whole file: the chunks within size are the same, and a last one
	// cut short by size is not, and is sent.
	if stored, ok := s.known.get(p, stampOf(&st)); ok && int64(len(stored.chunks)) == (st.Size+deltaChunk-1)/deltaChunk*32 {
		return stored.chunks[:(size+deltaChunk-1)/deltaChunk*32], nil
	}
	return chunkHashes(ctx, fd, size)
}

// setBasis records the receiver's chunk hashes, before Want.
func (s *source) setBasis(files []basisFile) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ready != nil {
		return errors.New("the receiver sent Basis after Want")
	}
	if s.basis == nil {
		s.basis = map[uint32][]byte{}
	}
	for _, f := range files {
		if int(f.Index) >= len(s.entries) || len(f.Hashes)%32 != 0 {
			return fmt.Errorf("basis for entry %d: %w", f.Index, ErrHostile)
		}
		s.basis[f.Index] = f.Hashes
	}
	return nil
}

// sameChunk reports whether chunk k of a file, with content b, is what the receiver has
// (hashes: its chunk hashes of that file).
func sameChunk(hashes []byte, k int, b []byte) bool {
	if (k+1)*32 > len(hashes) {
		return false
	}
	sum := blake3.Sum256(b)
	return bytes.Equal(hashes[k*32:(k+1)*32], sum[:])
}

// sendChunks sends the file fd, e, chunk by chunk: a chunk whose hash the receiver has
// (hashes) as frameSame, the others as data. h hashes every byte.
func (s *source) sendChunks(fw *frameWriter, fd int, e entry, h io.Writer, buf []byte, hashes []byte) error {
	for k, off := 0, int64(0); off < e.Size; k, off = k+1, off+deltaChunk {
		n := int(min(deltaChunk, e.Size-off))
		if err := preadFull(fd, buf[:n], off); errors.Is(err, errShort) {
			return fmt.Errorf("%s shrank while it was being sent; retry the transfer", e.Path)
		} else if err != nil {
			return fmt.Errorf("read %s: %w", e.Path, err)
		}
		_, _ = h.Write(buf[:n])
		if sameChunk(hashes, k, buf[:n]) {
			if err := fw.Same(int64(n)); err != nil {
				return err
			}
			continue
		}
		if err := fw.Write(frameData, buf[:n]); err != nil {
			return err
		}
		s.mu.Lock()
		s.bytes += int64(n)
		s.mu.Unlock()
		s.flow.Bytes(n)
	}
	return nil
}

// Same says the next length bytes of the file are the receiver's own.
func (f *frameWriter) Same(length int64) error {
	var p [8]byte
	binary.BigEndian.PutUint64(p[:], uint64(length))
	return f.Write(frameSame, p[:])
}

// receiveSame takes n bytes of the file fd at off as they are, reading them into h: the
// sender found them equal to the receiver's chunk there. covered is how much of the
// file the receiver offered by its chunk hashes (0: none).
func receiveSame(fd int, path string, h io.Writer, buf []byte, off, n, size, covered int64) error {
	switch {
	case covered == 0:
		return fmt.Errorf("%w: %q: the sender skipped a part the receiver did not offer", ErrHostile, path)
	case n <= 0 || n > deltaChunk || n > size-off || off+n > covered:
		return fmt.Errorf("%w: %q: a skipped part beyond what the receiver offered", ErrHostile, path)
	}
	if err := preadFull(fd, buf[:n], off); err != nil {
		return fmt.Errorf("%s: read its own copy (%s): %w", path, err.Error(), ErrCorrupt)
	}
	_, _ = h.Write(buf[:n])
	return nil
}
