package transfer

import (
	"fmt"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Free space is reserved across the pulls running at once in this process: two pulls
// that each fit must not together fill the disk halfway through. A pull reserves what it
// has yet to receive when it starts, and its reservation shrinks as the bytes land (they
// then count in the file system's own free space instead).
var space reservations

type reservations struct {
	mu      sync.Mutex
	pending map[*reservation]struct{}
}

// reservation is the space one pull holds on one file system.
type reservation struct {
	fsid    unix.Fsid
	need    int64
	written atomic.Int64
}

// left is what the pull has still to write of what it reserved.
func (r *reservation) left() int64 { return max(0, r.need-r.written.Load()) }

// wrote counts n bytes written.
func (r *reservation) wrote(n int) { r.written.Add(int64(n)) }

// reserve holds need bytes on the file system of dir, or refuses if its free space, less
// what other pulls running now have yet to write there, is short of it.
func (rs *reservations) reserve(dir string, need int64) (*reservation, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return nil, fmt.Errorf("check the free space of %s: %w", dir, err)
	}
	free := int64(st.Bavail) * st.Bsize
	rs.mu.Lock()
	defer rs.mu.Unlock()
	var held int64
	for r := range rs.pending {
		if r.fsid == st.Fsid {
			held += r.left()
		}
	}
	if need > free-held {
		if held > 0 {
			return nil, fmt.Errorf("the volume needs %d bytes, but %s has %d free, of which other pulls running now need %d; free some space, or retry once they are done",
				need, dir, free, held)
		}
		return nil, fmt.Errorf("the volume needs %d bytes, but %s has %d free; free some space and retry", need, dir, free)
	}
	r := &reservation{fsid: st.Fsid, need: need}
	if rs.pending == nil {
		rs.pending = map[*reservation]struct{}{}
	}
	rs.pending[r] = struct{}{}
	return r, nil
}

// release gives back what r holds. It may be called more than once.
func (rs *reservations) release(r *reservation) {
	if r == nil {
		return
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	delete(rs.pending, r)
}
