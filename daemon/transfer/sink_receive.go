package transfer

import (
	"bufio"
	"errors"
	"fmt"
	"io"

	"github.com/zeebo/blake3"
	"golang.org/x/sys/unix"

	"github.com/drayage/drayage/daemon/metrics"
)

// Bytes is how many content bytes have arrived so far.
func (s *sink) Bytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes
}

// Files is how many wanted files have arrived, verified, so far.
func (s *sink) Files() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.hashes)
}

// Receive reads files from one data stream until frameDone. Streams run in parallel.
func (s *sink) Receive(r io.Reader) error {
	fr := newFrameReader(bufio.NewReaderSize(r, 256<<10))
	h := blake3.New() // one per stream, reset per file
	for {
		f, err := fr.Next()
		if err != nil {
			return err
		}
		switch f.Type {
		case frameDone:
			return nil
		case frameError:
			return &failure{reason: metrics.ReasonAborted, err: fmt.Errorf("sender: %s", f.Payload)}
		case frameFile:
			index, size := fileHeader(f.Payload)
			if err := s.receiveFile(fr, index, size, h); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w: frame type %d outside a file", ErrHostile, f.Type)
		}
	}
}

// claim marks a file as being received, refusing one not wanted or sent twice.
func (s *sink) claim(index uint32, size int64) (entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if int(index) >= len(s.entries) || !s.send[index] || s.received[index] {
		return entry{}, fmt.Errorf("%w: content for entry %d, which was not asked for", ErrHostile, index)
	}
	e := s.entries[index]
	if size != e.Size {
		return entry{}, fmt.Errorf("%w: %q sent with %d bytes, declared %d", ErrHostile, e.Path, size, e.Size)
	}
	s.received[index] = true
	return e, nil
}

// addRange adds the part [off, off+n) to parts, which end before off: a part that
// continues the last one extends it.
func addRange(parts [][2]int64, off, n int64) [][2]int64 {
	if k := len(parts) - 1; k >= 0 && parts[k][0]+parts[k][1] == off {
		parts[k][1] += n
		return parts
	}
	return append(parts, [2]int64{off, n})
}

// keepPartial says whether a large file whose receiving failed after off bytes stays in
// staging for the next attempt: its times are not the manifest's, so the next attempt
// asks for it again, but offers what arrived as the basis of a delta (delta.go) and is
// sent only the chunks that differ, then verifies the whole file by its hash. A cut in
// the middle of a 10 GiB file resumes there, not from 0%. What arrived damaged or broke
// the protocol's rules goes.
func keepPartial(e entry, off int64, err error) bool {
	return e.Size >= deltaMin && off >= deltaChunk && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrHostile)
}

func (s *sink) receiveFile(fr *frameReader, index uint32, size int64, h *blake3.Hasher) (err error) {
	var off int64 // how much of the file has arrived
	e, err := s.claim(index, size)
	if err != nil {
		return err
	}
	d, base, release, err := s.dirs.split(e.Path)
	if err != nil {
		return fmt.Errorf("open the directory of %s in staging: %w", e.Path, err)
	}
	defer release()
	// The file is written in place: until setMeta gives it its times, last, its times
	// are not the manifest's, so an attempt that resumes sends it again.
	fd, now, oldSize, err := d.create(base, e.Mode&0o777)
	reused := oldSize >= 0
	if !reused {
		s.touch(e.Path)
	}
	if err != nil {
		return fmt.Errorf("create %s in staging: %w", e.Path, err)
	}
	defer func() {
		unix.Close(fd)
		if err != nil {
			if !keepPartial(e, off, err) {
				_ = unix.Unlinkat(d.fd, base, 0) // nothing damaged stays
			}
			s.mu.Lock()
			s.received[index] = false
			s.mu.Unlock()
		}
	}()
	h.Reset()
	w := io.Writer(h) // every byte of the file, in order
	var chunks *chunkSummer
	if size >= deltaMin {
		chunks = &chunkSummer{}
		w = io.MultiWriter(h, chunks)
	}
	var flushed int64
	var wrote [][2]int64 // the parts written, in order: a copy of the file taken before needs only these
	endsInHole := false
	var same []byte // a chunk of this node's own copy, read for the hash (frameSame)
	for {
		fm, err := fr.Next()
		if err != nil {
			return fmt.Errorf("%s: %w", e.Path, err)
		}
		switch fm.Type {
		case frameData:
			if int64(len(fm.Payload)) > size-off {
				return fmt.Errorf("%w: %q: more data than its declared %d bytes", ErrHostile, e.Path, size)
			}
			if err := pwriteFull(fd, fm.Payload, off); err != nil {
				return fmt.Errorf("write %s: %w", e.Path, err)
			}
			_, _ = w.Write(fm.Payload)
			wrote = addRange(wrote, off, int64(len(fm.Payload)))
			off += int64(len(fm.Payload))
			endsInHole = false
			if off-flushed >= writeBehind {
				// Start writing this part to disk now, so that the disk works while the
				// rest arrives and Finish's syncfs has little left to wait for.
				_ = unix.SyncFileRange(fd, flushed, off-flushed, unix.SYNC_FILE_RANGE_WRITE)
				flushed = off
			}
			s.mu.Lock()
			s.bytes += int64(len(fm.Payload))
			s.mu.Unlock()
			s.space.wrote(len(fm.Payload))
			s.flow.Bytes(len(fm.Payload))
		case frameSame:
			if !reused {
				return fmt.Errorf("%s: the sender skipped a part this node no longer has: %w", e.Path, ErrCorrupt)
			}
			if same == nil {
				same = make([]byte, deltaChunk)
			}
			n := holeLength(fm.Payload)
			if err := receiveSame(fd, e.Path, w, same, off, n, size, s.basis[index]); err != nil {
				return err
			}
			off += n
			endsInHole = false
		case frameHole:
			n := holeLength(fm.Payload)
			if n <= 0 || n > size-off { // never off+n: a hole of 2^63-1 would overflow it
				return fmt.Errorf("%w: %q: hole beyond its declared size", ErrHostile, e.Path)
			}
			if reused { // the old content there must become a hole
				if err := unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n); err != nil {
					return fmt.Errorf("%s: %w", e.Path, err)
				}
				wrote = addRange(wrote, off, n)
			}
			hashZeros(w, n)
			off += n
			endsInHole = true
		case frameEnd:
			if off != size {
				return fmt.Errorf("%w: %q ended at %d of %d bytes", ErrHostile, e.Path, off, size)
			}
			var sum [32]byte
			h.Sum(sum[:0])
			if string(sum[:]) != string(fm.Payload) {
				return fmt.Errorf("%s: %w", e.Path, ErrCorrupt)
			}
			if endsInHole || oldSize > size {
				if err := unix.Ftruncate(fd, size); err != nil { // a trailing hole is not written; an old file may be longer
					return fmt.Errorf("%s: %w", e.Path, err)
				}
			}
			if reused || d.defaultACL { // attributes of the old file, or an ACL from the directory
				if err := dropOtherXattrs(fd, e); err != nil {
					return fmt.Errorf("%s: %w", e.Path, err)
				}
			}
			if err := setMeta(fd, e, now); err != nil {
				return fmt.Errorf("%s: %w", e.Path, err)
			}
			var st unix.Stat_t // as it is now, to store with its hash
			if err := unix.Fstat(fd, &st); err != nil {
				return fmt.Errorf("%s: %w", e.Path, err)
			}
			s.stamps[index] = stampOf(&st)
			s.mu.Lock()
			s.hashes[index] = sum
			if _, ok := s.bases[index]; ok && reused {
				s.deltas[index] = wrote
			}
			if chunks != nil {
				s.chunks[index] = chunks.Sum()
			}
			s.mu.Unlock()
			s.flow.File()
			return nil
		default:
			return fmt.Errorf("%w: %q: frame type %d inside a file", ErrHostile, e.Path, fm.Type)
		}
	}
}

// writeBehind is how much of a large file is written before the disk is asked to start
// writing it out.
const writeBehind = 2 << 20

// pwriteFull writes all of b at off.
func pwriteFull(fd int, b []byte, off int64) error {
	for len(b) > 0 {
		n, err := unix.Pwrite(fd, b, off)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		b, off = b[n:], off+int64(n)
	}
	return nil
}
