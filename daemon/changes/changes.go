// Package changes tells which volumes changed, from the kernel: one fanotify group with
// a filesystem mark on the file system that holds the volumes, reporting the directory
// (a file handle) and name of every change — content written, attributes set, entries
// made, removed or renamed — wherever it is made from: a container writes through its
// own mount of the volume, which a mount mark would not see. The owner of a replicated
// volume syncs it only when it changed (package volume, replicate.go), so an idle
// volume costs nothing while it is mounted.
//
// A directory's handle is resolved to its path once (open_by_handle_at) and the volume
// it belongs to is cached; a tree swapped in by a move or a sync invalidates the cache
// (Forget). What the tracker cannot vouch for counts as changed: every volume until it
// was first taken, and every volume after the kernel dropped events (its queue
// overflowed).
//
// The tracker also keeps, by volume, the paths that changed and when (a sequence number
// that grows with every event): a sync asks what changed since the tree it last read
// (Since) and reads only those paths again, not the whole tree. That log is bounded
// (maxPaths by volume); past the bound, or after a lost queue, Since says it cannot tell
// and the sync walks the tree. The kernel has to allow it (Linux 5.9 or later, CAP_SYS_ADMIN for the
// mark, CAP_DAC_READ_SEARCH to open handles): Start fails otherwise, and the caller walks
// each mounted volume at every sync instead.
package changes

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// events is what the tracker listens for: every change to a file's content, attributes
// or names, on directories too.
const events = unix.FAN_MODIFY | unix.FAN_ATTRIB | unix.FAN_CREATE | unix.FAN_DELETE | unix.FAN_MOVED_FROM | unix.FAN_MOVED_TO |
	unix.FAN_DELETE_SELF | unix.FAN_MOVE_SELF | unix.FAN_ONDIR

// maxCached bounds the directories whose volume is remembered; past it, the cache starts
// again empty.
const maxCached = 1 << 16

// maxPaths bounds the changed paths remembered for one volume; past it, the volume's
// log starts again empty and a sync from before that walks its tree.
const maxPaths = 1 << 16

// Tracker tells which volumes under one directory changed. It is safe for concurrent use.
type Tracker struct {
	dir   string   // the volumes' directory: a volume NAME's files are under dir/NAME/data
	file  *os.File // the fanotify group
	mount *os.File // dir, open: the file system handles are resolved on
	log   *slog.Logger
	done  chan struct{}

	mu      sync.Mutex
	changed map[string]bool
	// lost counts the times the tracker could not vouch for anything (its start, a lost
	// queue); taken holds, by volume, the count as of its last Take.
	lost   uint64
	taken  map[string]uint64
	cached map[string]place // a directory's handle → where it is (volume "" for none)

	id     string              // this tracker's, in every position it gives out
	seq    uint64              // counts the events handled
	lostAt uint64              // seq when the kernel last dropped events
	paths  map[string]*pathLog // by volume
}

// place is a directory's volume and its path in it ("." for the volume's root).
type place struct{ volume, rel string }

// pathLog is what changed in one volume: every path changed after from, with the seq of
// its last change.
type pathLog struct {
	from  uint64
	paths map[string]uint64
}

// Start tracks the changes to the volumes under dir (dir/NAME/data/...).
func Start(dir string, log *slog.Logger) (*Tracker, error) {
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_NOTIF|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK|unix.FAN_REPORT_DFID_NAME, unix.O_RDONLY|unix.O_LARGEFILE)
	if err != nil {
		return nil, fmt.Errorf("fanotify with directory and name reports: %w (Linux 5.9 or later and CAP_SYS_ADMIN are needed)", err)
	}
	if err := unix.FanotifyMark(fd, unix.FAN_MARK_ADD|unix.FAN_MARK_FILESYSTEM, events, unix.AT_FDCWD, dir); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("fanotify mark on the file system of %s: %w", dir, err)
	}
	mount, err := os.Open(dir)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	// An event names a directory by its handle: check now that handles can be opened
	// (CAP_DAC_READ_SEARCH), or every change would go unseen.
	if h, _, err := unix.NameToHandleAt(unix.AT_FDCWD, dir, 0); err != nil {
		err = fmt.Errorf("file handles on the file system of %s: %w", dir, err)
		unix.Close(fd)
		mount.Close()
		return nil, err
	} else if hfd, err := unix.OpenByHandleAt(int(mount.Fd()), h, unix.O_PATH); err != nil {
		err = fmt.Errorf("open a file handle: %w (CAP_DAC_READ_SEARCH is needed)", err)
		unix.Close(fd)
		mount.Close()
		return nil, err
	} else {
		unix.Close(hfd)
	}
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	t := &Tracker{dir: filepath.Clean(dir), file: os.NewFile(uintptr(fd), "fanotify"), mount: mount, log: log, done: make(chan struct{}),
		changed: map[string]bool{}, lost: 1, taken: map[string]uint64{}, cached: map[string]place{},
		id: hex.EncodeToString(id), seq: 1, paths: map[string]*pathLog{}}
	go t.read()
	return t, nil
}

// Close stops tracking.
func (t *Tracker) Close() error {
	err := t.file.Close() // the reader's Read returns
	<-t.done
	return errors.Join(err, t.mount.Close())
}

// Take reports whether volume name may have changed since the last Take of it, and
// starts counting again from now: true the first time, and after the kernel dropped
// events.
func (t *Tracker) Take(name string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	changed := t.changed[name] || t.taken[name] < t.lost
	delete(t.changed, name)
	t.taken[name] = t.lost
	return changed
}

// Pending reports whether volume name may have changed since the last Take of it, as
// Take would, without starting to count again.
func (t *Tracker) Pending(name string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.changed[name] || t.taken[name] < t.lost
}

// Mark counts volume name as changed: what a sync that failed did not deliver.
func (t *Tracker) Mark(name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.changed[name] = true
}

// Forget drops what the tracker knows of directories: trees were swapped (a move or a
// sync installed one), and a directory may now belong to another volume, or to one.
func (t *Tracker) Forget() {
	t.mu.Lock()
	defer t.mu.Unlock()
	clear(t.cached)
}

// Position is where the tracker's log of changed paths stands now: a tree read after
// this call holds every change logged up to it. log names this tracker; a position of
// another tracker (an earlier run of the daemon) is worth nothing here.
func (t *Tracker) Position() (log string, seq uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.id, t.seq
}

// Since lists the paths of volume name (relative to its root, sorted) changed after
// position (log, seq), and reports whether the list is complete: false if the position
// is another tracker's, or from before the kernel dropped events or the volume's log
// was started again.
func (t *Tracker) Since(name, log string, seq uint64) ([]string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if log != t.id || seq < t.lostAt || t.lost == ^uint64(0) {
		return nil, false
	}
	l := t.paths[name]
	if l == nil {
		return nil, true
	}
	if seq < l.from {
		return nil, false
	}
	var out []string
	for p, at := range l.paths {
		if at > seq {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out, true
}

// note logs that path rel of volume name changed. t.mu is held.
func (t *Tracker) note(name, rel string) {
	t.changed[name] = true
	t.seq++
	l := t.paths[name]
	if l == nil {
		l = &pathLog{paths: map[string]uint64{}}
		t.paths[name] = l
	}
	if _, ok := l.paths[rel]; !ok && len(l.paths) >= maxPaths {
		clear(l.paths)
		l.from = t.seq
	}
	l.paths[rel] = t.seq
}

// read handles the group's events until Close.
func (t *Tracker) read() {
	defer close(t.done)
	buf := make([]byte, 64<<10)
	for {
		n, err := t.file.Read(buf)
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				t.log.Error("change tracking stopped; every replica sync walks its tree from now on", "err", err)
				t.mu.Lock()
				t.lost = ^uint64(0) // every Take reports a change
				t.mu.Unlock()
			}
			return
		}
		t.handle(buf[:n])
	}
}

// handle takes the events in b.
func (t *Tracker) handle(b []byte) {
	for len(b) >= unix.FAN_EVENT_METADATA_LEN {
		evLen := binary.NativeEndian.Uint32(b[0:4])
		metaLen := binary.NativeEndian.Uint16(b[6:8])
		mask := binary.NativeEndian.Uint64(b[8:16])
		if evLen < uint32(metaLen) || int(evLen) > len(b) {
			return
		}
		ev := b[metaLen:evLen]
		b = b[evLen:]
		if mask&unix.FAN_Q_OVERFLOW != 0 {
			t.log.Warn("the kernel dropped file change events; the next replica syncs walk their trees")
			t.mu.Lock()
			t.lost++
			t.seq++
			t.lostAt = t.seq
			clear(t.paths)
			t.mu.Unlock()
			continue
		}
		if p, ok := t.placeOf(ev); ok {
			t.mu.Lock()
			t.note(p.volume, p.rel)
			t.mu.Unlock()
		}
		if mask&unix.FAN_ONDIR != 0 && mask&(unix.FAN_MOVED_FROM|unix.FAN_MOVED_TO|unix.FAN_MOVE_SELF|unix.FAN_DELETE|unix.FAN_DELETE_SELF) != 0 {
			// A directory moved or went: the paths remembered for the directories in it
			// are wrong now.
			t.Forget()
		}
	}
}

// placeOf finds the path an event names (its directory's handle, and the name in it)
// and the volume it is in, from its first info record; false for none.
func (t *Tracker) placeOf(info []byte) (place, bool) {
	if len(info) < 4+8+8 {
		return place{}, false
	}
	switch info[0] {
	case unix.FAN_EVENT_INFO_TYPE_FID, unix.FAN_EVENT_INFO_TYPE_DFID, unix.FAN_EVENT_INFO_TYPE_DFID_NAME:
	default:
		return place{}, false
	}
	recLen := min(int(binary.NativeEndian.Uint16(info[2:4])), len(info))
	fh := info[4+8 : recLen] // after the header and the fsid
	if len(fh) < 8 {
		return place{}, false
	}
	size := int(binary.NativeEndian.Uint32(fh[0:4]))
	if 8+size > len(fh) {
		return place{}, false
	}
	name := "."
	if info[0] == unix.FAN_EVENT_INFO_TYPE_DFID_NAME {
		if n, _, ok := strings.Cut(string(fh[8+size:]), "\x00"); ok && n != "" {
			name = n
		}
	}
	key := string(fh[:8+size])
	t.mu.Lock()
	d, ok := t.cached[key]
	t.mu.Unlock()
	if !ok {
		var keep bool
		d, keep = t.resolve(int32(binary.NativeEndian.Uint32(fh[4:8])), fh[8:8+size])
		if keep {
			t.mu.Lock()
			if len(t.cached) >= maxCached {
				clear(t.cached)
			}
			t.cached[key] = d
			t.mu.Unlock()
		}
	}
	switch {
	case d.volume != "" && name == ".":
		return d, true
	case d.volume != "":
		return place{d.volume, path.Join(d.rel, name)}, true
	case d.rel != "" && name == "data": // the volume's directory: its root is data
		return place{d.rel, "."}, true
	}
	return place{}, false
}

// resolve finds where a file handle's directory is, and says whether that may be
// remembered: a directory in a volume is until Forget; one elsewhere under the state
// dir is not, for it may be renamed into a volume (a volume is made in the state dir's
// tmp/ and renamed into place; a move's tree is assembled in staging/). A volume's own
// directory (dir/NAME) comes back as rel NAME with no volume: the event's name says
// whether its root (data) is meant. A directory that was deleted is nowhere.
func (t *Tracker) resolve(kind int32, handle []byte) (d place, keep bool) {
	fd, err := unix.OpenByHandleAt(int(t.mount.Fd()), unix.NewFileHandle(kind, handle), unix.O_PATH)
	if err != nil {
		return place{}, false // gone already, or on another file system
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Nlink == 0 {
		return place{}, false
	}
	p, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
	if err != nil {
		return place{}, false
	}
	if name, rel := placeIn(t.dir, p); name != "" {
		return place{name, rel}, true
	}
	if filepath.Dir(p) == t.dir {
		return place{rel: filepath.Base(p)}, true
	}
	state := filepath.Dir(t.dir)
	return place{}, p != state && !strings.HasPrefix(p, state+"/")
}

// placeIn is the volume whose files path is among (dir/NAME/data or below), and path's
// place in it ("." for its root); "" if none.
func placeIn(dir, path string) (name, rel string) {
	rest, ok := strings.CutPrefix(path, dir+"/")
	if !ok {
		return "", ""
	}
	name, rest, _ = strings.Cut(rest, "/")
	if rest == "data" {
		return name, "."
	}
	if rel, ok := strings.CutPrefix(rest, "data/"); ok {
		return name, rel
	}
	return "", ""
}

// VolumeOf is the volume whose files path is among (dir/NAME/data or below), or "".
func VolumeOf(dir, path string) string {
	name, _ := placeIn(dir, path)
	return name
}
