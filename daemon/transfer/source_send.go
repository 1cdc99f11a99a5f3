package transfer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/zeebo/blake3"
	"golang.org/x/sys/unix"
)

// Changed lists the files sent that changed between the walk and the end of their
// reading (a volume sent while mounted, to a replica): their content may be torn.
func (s *source) Changed() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.changed)
}

// Bytes is how many content bytes have been sent so far.
func (s *source) Bytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes
}

// Send writes the wanted files to one data stream, then frameDone. Several Sends run at
// once to use several streams; each file goes to one of them.
func (s *source) Send(ctx context.Context, w io.Writer) error {
	s.mu.Lock()
	ready := s.ready
	s.mu.Unlock()
	if ready == nil {
		return errors.New("no files wanted yet")
	}
	// Many small files' frames share TLS records and syscalls.
	bw := bufio.NewWriterSize(w, 256<<10)
	defer bw.Flush()
	fw := newFrameWriter(bw)
	buf := make([]byte, chunkSize)
	h := blake3.New() // one per stream, reset per file
	for {
		var o opened
		var more bool
		select {
		case o, more = <-ready:
		default: // nothing to send yet: let the receiver have what is buffered meanwhile
			if err := bw.Flush(); err != nil {
				return err
			}
			o, more = <-ready
		}
		if !more {
			break
		}
		if ctx.Err() != nil {
			if o.err == nil {
				unix.Close(o.fd)
			}
			return ctx.Err()
		}
		if err := s.sendFile(fw, o, buf, h); err != nil {
			_ = fw.Write(frameError, []byte(err.Error()))
			_ = bw.Flush()
			return err
		}
	}
	if err := fw.Write(frameDone, nil); err != nil {
		return err
	}
	return bw.Flush()
}

// sendFile sends the file o, and closes it.
func (s *source) sendFile(fw *frameWriter, o opened, buf []byte, h *blake3.Hasher) error {
	if o.err != nil {
		return o.err
	}
	fd, index := o.fd, o.index
	defer unix.Close(fd)
	e := s.entries[index]
	st, mnt, err := statAt(fd, "", unix.AT_EMPTY_PATH)
	if err != nil {
		return fmt.Errorf("stat %s: %w", e.Path, err)
	}
	before := stampOf(&st)
	if st.Size != e.Size || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("%s changed while it was being sent (%d bytes, listed with %d); retry the transfer", e.Path, st.Size, e.Size)
	}
	if s.place.elsewhere(placeOf(&st, mnt)) {
		return fmt.Errorf("%s became a mount point while it was being sent; remove the mount and retry the transfer", e.Path)
	}
	if err := fw.File(index, e.Size); err != nil {
		return err
	}
	h.Reset()
	s.mu.Lock()
	basis := s.basis[index]
	s.mu.Unlock()
	var off int64
	if basis != nil {
		if err := s.sendChunks(fw, fd, e, h, buf, basis); err != nil {
			return err
		}
		off = e.Size
	}
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
	// A file written while it was read may have been read torn: it goes, self-consistent
	// by its hash, but the transfer does not count (Finish fails with ErrChanged).
	torn := before != s.tree.stamp(int(index))
	if err := unix.Fstat(fd, &st); err != nil || stampOf(&st) != before || s.live && racy(&st, time.Now()) {
		torn = true
	}
	s.mu.Lock()
	s.hashes[index] = sum
	if torn {
		s.changed = append(s.changed, e.Path)
	}
	s.mu.Unlock()
	if err := fw.Write(frameEnd, sum[:]); err != nil {
		return err
	}
	s.flow.File()
	return nil
}

// sendRange sends bytes [off, end) of the file fd as data frames.
func (s *source) sendRange(fw *frameWriter, fd int, name string, h io.Writer, buf []byte, off, end int64) error {
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
		if err := fw.Write(frameData, buf[:n]); err != nil {
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

// racyWindow is how recent a file's last change may be for a write in the same clock
// tick not to change its times: file times move with the kernel's coarse clock (a tick
// of 1 to 10 ms), so a file written, read and written again within one tick looks
// unchanged. Such a file is not sent as settled (git calls it "racily clean"): its
// transfer counts as torn, and the retry, a moment later, sends it again.
const racyWindow = 50 * time.Millisecond

// racy reports whether st changed so recently, as of now, that a later write in the same
// tick would go unseen. ctime, which no one can set, says when; a clock that went back
// makes nothing racy.
func racy(st *unix.Stat_t, now time.Time) bool {
	d := now.UnixNano() - st.Ctim.Nano()
	return d >= 0 && d < racyWindow.Nanoseconds()
}
