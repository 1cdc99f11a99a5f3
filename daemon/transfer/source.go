package transfer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/zeebo/blake3"
	"golang.org/x/sys/unix"

	"github.com/drayage/drayage/daemon/metrics"
)

// Source sends a tree's files. The tree is opened as an os.Root, so a symlink never leads
// the sender out of the volume.
type Source struct {
	root    *os.Root
	dirs    *dirCache
	entries []Entry
	flow    *metrics.Flow

	mu     sync.Mutex
	hashes map[uint32][32]byte
	bytes  int64
}

// NewSource walks dir and returns a source for it with its manifest.
func NewSource(dir string) (*Source, error) {
	entries, err := Walk(dir)
	if err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	return &Source{root: root, dirs: newDirCache(root, false), entries: entries, hashes: map[uint32][32]byte{}}, nil
}

// Manifest is the tree as walked.
func (s *Source) Manifest() []Entry { return s.entries }

// Bytes is how many content bytes have been sent so far.
func (s *Source) Bytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes
}

// Close releases the tree.
func (s *Source) Close() error {
	s.dirs.close()
	return s.root.Close()
}

// Send writes the files whose indexes come from queue to one data stream, then
// FrameDone. Several Sends share one queue to use several streams.
func (s *Source) Send(ctx context.Context, w io.Writer, queue <-chan uint32) error {
	// Many small files' frames share TLS records and syscalls.
	bw := bufio.NewWriterSize(w, 256<<10)
	defer bw.Flush()
	fw := NewFrameWriter(bw)
	buf := make([]byte, ChunkSize)
	h := blake3.New() // one per stream, reset per file
	for index := range queue {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if int(index) >= len(s.entries) || s.entries[index].Kind != KindFile {
			err := fmt.Errorf("entry %d is not a file", index)
			_ = fw.Write(FrameError, []byte(err.Error()))
			_ = bw.Flush()
			return err
		}
		if err := s.sendFile(fw, index, buf, h); err != nil {
			_ = fw.Write(FrameError, []byte(err.Error()))
			_ = bw.Flush()
			return err
		}
	}
	if err := fw.Write(FrameDone, nil); err != nil {
		return err
	}
	return bw.Flush()
}

func (s *Source) sendFile(fw *FrameWriter, index uint32, buf []byte, h *blake3.Hasher) error {
	e := s.entries[index]
	d, base, release, err := s.dirs.split(e.Path)
	if err != nil {
		return fmt.Errorf("open the directory of %s: %w", e.Path, err)
	}
	defer release()
	// O_NONBLOCK: a FIFO put in the file's place must not block the open.
	fd, err := d.open(base, unix.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", e.Path, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("stat %s: %w", e.Path, err)
	}
	if st.Size != e.Size || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("%s changed while it was being sent (%d bytes, listed with %d); retry the transfer", e.Path, st.Size, e.Size)
	}
	if err := fw.File(index, e.Size); err != nil {
		return err
	}
	h.Reset()
	var off int64
	// Files smaller than this have no room for a hole worth finding.
	probe := e.Size >= 64<<10
	for off < e.Size {
		if !probe {
			if err := s.sendRange(fw, fd, e.Path, h, buf, off, e.Size); err != nil {
				return err
			}
			break
		}
		// Find the next data; what lies before it is a hole.
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			data = e.Size // only a hole is left
		} else if err != nil {
			data = off // no hole support: treat it all as data
		}
		if data > off {
			if err := fw.Hole(data - off); err != nil {
				return err
			}
			hashZeros(h, data-off)
			off = data
			continue
		}
		end, err := unix.Seek(fd, off, unix.SEEK_HOLE)
		if err != nil || end > e.Size {
			end = e.Size
		}
		if err := s.sendRange(fw, fd, e.Path, h, buf, off, end); err != nil {
			return err
		}
		off = end
	}
	var sum [32]byte
	h.Sum(sum[:0])
	s.mu.Lock()
	s.hashes[index] = sum
	s.mu.Unlock()
	if err := fw.Write(FrameEnd, sum[:]); err != nil {
		return err
	}
	s.flow.File()
	return nil
}

// sendRange sends bytes [off, end) of the file fd as data frames.
func (s *Source) sendRange(fw *FrameWriter, fd int, name string, h io.Writer, buf []byte, off, end int64) error {
	for off < end {
		n, err := unix.Pread(fd, buf[:min(int64(len(buf)), end-off)], off)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", name, err)
		}
		if n == 0 {
			return fmt.Errorf("%s shrank while it was being sent; retry the transfer", name)
		}
		_, _ = h.Write(buf[:n])
		if err := fw.Write(FrameData, buf[:n]); err != nil {
			return err
		}
		off += int64(n)
		s.mu.Lock()
		s.bytes += int64(n)
		s.mu.Unlock()
		s.flow.Bytes(n)
	}
	return nil
}

// RootHash is the hash of the tree as sent: the manifest and the files sent so far.
func (s *Source) RootHash() [32]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return RootHash(s.entries, s.hashes)
}
