package transfer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// tree is what walk finds.
type tree struct {
	entries []entry
	// ctimes are the entries' change times, in nanoseconds: a file whose change time is
	// the one recorded with its stored hash has not been written since.
	ctimes []int64
	// mounts are the mount points left out, sorted.
	mounts []string
	// place is the tree's file system and mount.
	place place
	// read counts the entries whose metadata was read from disk to make the tree: all
	// of them for a walk, the changed ones for a rescan.
	read int
	// links counts the files with more than one link (listed once as kindFile, then as
	// kindHardlink for each other name in the tree).
	links int
}

// stamp is entry i's, as the walk saw it.
func (t tree) stamp(i int) fileStamp {
	return fileStamp{size: t.entries[i].Size, mtime: t.entries[i].MTime, ctime: t.ctimes[i]}
}

// walk lists the tree under root: lstat only, symlinks never followed, hardlinks to a file
// listed earlier as kindHardlink. Entries come depth first, each directory's names in
// byte order, so a directory comes before everything in it. It never leaves root's file
// system: a mount point inside the tree (a directory or a file mounted there) is left
// out, with what is under it.
//
// Reading a tree's metadata is latency-bound on a cold cache and CPU-bound on a warm one,
// so walk reads with several workers, each taking up to walkChunk names of one directory
// at a time (a single huge directory is read in parallel too), and looks each name up
// relative to its open directory: one short lookup per call, where a full path costs a
// lookup per component.
//
// Once ctx ends, the workers stop at their next chunk and walk returns ctx's error; walk
// returns only when every worker has ended.
func walk(ctx context.Context, root string) (tree, error) {
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return tree{}, fmt.Errorf("open %s: %w", root, err)
	}
	w := &walker{ctx: ctx, root: root, jobs: make(chan walkJob, 1024), listed: map[string]*walkDir{}}
	st, mnt, err := statAt(fd, "", unix.AT_EMPTY_PATH)
	if err != nil {
		unix.Close(fd)
		return tree{}, fmt.Errorf("stat %s: %w", root, err)
	}
	w.place = placeOf(&st, mnt)
	top := entry{Path: ".", Kind: kindDir, Mode: st.Mode & 0o7777, UID: st.Uid, GID: st.Gid, MTime: st.Mtim.Nano()}
	x, err := w.xattrs(fd, "", ".", make([]byte, xattrBuf))
	if err != nil {
		unix.Close(fd)
		return tree{}, err
	}
	top.Xattrs = x
	var workers sync.WaitGroup
	for range 8 {
		workers.Add(1)
		go func() {
			defer workers.Done()
			buf := make([]byte, xattrBuf)
			for j := range w.jobs {
				w.do(j, buf)
			}
		}()
	}
	w.list(fd, ".")
	w.pending.Wait()
	close(w.jobs)
	workers.Wait()
	if w.err != nil {
		return tree{}, w.err
	}
	out := tree{entries: make([]entry, 0, w.count.Load()+1), ctimes: make([]int64, 0, w.count.Load()+1)}
	out.entries = append(out.entries, top)
	out.ctimes = append(out.ctimes, st.Ctim.Nano())
	seen := map[[2]uint64]string{}
	var emit func(rel string)
	emit = func(rel string) {
		items := w.listed[rel].items
		// Names were read in the directory's own order, which makes lookups cheapest.
		slices.SortFunc(items, func(a, b walkItem) int { return strings.Compare(a.e.Path, b.e.Path) })
		for _, it := range items {
			if it.e.Kind == 0 { // a mount point, left out
				continue
			}
			if it.key != ([2]uint64{}) {
				out.links++
				if first, ok := seen[it.key]; ok {
					it.e.Kind, it.e.Target, it.e.Size, it.e.Xattrs = kindHardlink, first, 0, nil
				} else {
					seen[it.key] = it.e.Path
				}
			}
			out.entries = append(out.entries, it.e)
			out.ctimes = append(out.ctimes, it.ctime)
			if it.e.Kind == kindDir {
				emit(it.e.Path)
			}
		}
	}
	emit(".")
	slices.Sort(w.mounts)
	out.mounts, out.place, out.read = w.mounts, w.place, int(w.count.Load())+1
	return out, nil
}

// walkChunk is how many names of one directory a worker reads at a time.
const walkChunk = 128

// xattrBuf is a worker's buffer for attribute names; most files have none or a few.
const xattrBuf = 4 << 10

type walker struct {
	ctx     context.Context // ends the walk
	root    string
	place   place    // root's file system and mount
	mounts  []string // mount points left out; guarded by mu
	jobs    chan walkJob
	pending sync.WaitGroup // jobs not yet done
	count   atomic.Int64   // entries found
	failed  atomic.Bool    // err is set: stop

	mu     sync.Mutex
	listed map[string]*walkDir // by path
	err    error
}

// walkDir is a directory being read: its open descriptor, closed once every chunk of its
// names is done, and its entries in name order, each filled in by the chunk that has it.
type walkDir struct {
	fd    int
	left  atomic.Int32
	items []walkItem
}

type walkItem struct {
	e     entry
	ctime int64
	key   [2]uint64 // (dev, ino) of a file with several links
}

// walkJob is one chunk of a directory's names.
type walkJob struct {
	d     *walkDir
	rel   string // the directory's path
	names []string
	items []walkItem
}

// list reads the names of the directory rel, open as fd (which it takes over), and queues
// them in chunks.
func (w *walker) list(fd int, rel string) {
	names, err := readNames(fd)
	if err != nil {
		unix.Close(fd)
		w.fail(fmt.Errorf("read %s: %w", w.full(rel), err))
		return
	}
	d := &walkDir{fd: fd, items: make([]walkItem, len(names))}
	w.count.Add(int64(len(names)))
	w.mu.Lock()
	w.listed[rel] = d
	w.mu.Unlock()
	if len(names) == 0 {
		unix.Close(fd)
		return
	}
	d.left.Store(int32((len(names) + walkChunk - 1) / walkChunk))
	for i := 0; i < len(names); i += walkChunk {
		end := min(i+walkChunk, len(names))
		j := walkJob{d: d, rel: rel, names: names[i:end], items: d.items[i:end]}
		w.pending.Add(1)
		select {
		case w.jobs <- j:
		default:
			w.do(j, make([]byte, xattrBuf)) // the queue is full: do it here rather than block
		}
	}
}

// readNames lists the names in the open directory fd, but for "." and "..".
func readNames(fd int) ([]string, error) {
	buf := make([]byte, 16<<10)
	var names []string
	for {
		n, err := unix.ReadDirent(fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return names, nil
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
}

// do describes one chunk of names, and lists the directories among them.
func (w *walker) do(j walkJob, buf []byte) {
	defer w.pending.Done()
	defer func() {
		if j.d.left.Add(-1) == 0 {
			unix.Close(j.d.fd)
		}
	}()
	if err := w.ctx.Err(); err != nil {
		w.fail(fmt.Errorf("walk %s: %w", w.root, err))
		return
	}
	for i, name := range j.names {
		if w.failed.Load() {
			return
		}
		rel := name
		if j.rel != "." {
			rel = j.rel + "/" + name
		}
		it, err := w.describe(j.d.fd, name, rel, buf)
		if err != nil {
			w.fail(err)
			return
		}
		j.items[i] = it
		if it.e.Kind == 0 {
			continue // a mount point: nothing under it is listed
		}
		if it.e.Kind == kindDir {
			fd, err := unix.Openat(j.d.fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				w.fail(fmt.Errorf("open %s: %w", w.full(rel), err))
				return
			}
			w.list(fd, rel)
		}
	}
}

// describe reads one entry, name in the directory dfd, without following it.
func (w *walker) describe(dfd int, name, rel string, buf []byte) (walkItem, error) {
	var it walkItem
	flags := unix.AT_SYMLINK_NOFOLLOW
	if name == "" {
		flags |= unix.AT_EMPTY_PATH // dfd itself
	}
	st, mnt, err := statAt(dfd, name, flags)
	if err != nil {
		return it, fmt.Errorf("lstat %s: %w", w.full(rel), err)
	}
	if w.place.elsewhere(placeOf(&st, mnt)) {
		w.mu.Lock()
		w.mounts = append(w.mounts, rel)
		w.mu.Unlock()
		return it, nil // Kind 0: left out
	}
	e := entry{Path: rel, Mode: st.Mode & 0o7777, UID: st.Uid, GID: st.Gid, MTime: st.Mtim.Nano()}
	it.ctime = st.Ctim.Nano()
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		e.Kind, e.Size = kindFile, st.Size
		if st.Nlink > 1 {
			it.key = [2]uint64{st.Dev, st.Ino}
		}
	case unix.S_IFDIR:
		e.Kind = kindDir
	case unix.S_IFLNK:
		e.Kind = kindSymlink
		n, err := unix.Readlinkat(dfd, name, buf)
		if err != nil {
			return it, fmt.Errorf("readlink %s: %w", w.full(rel), err)
		}
		if n == len(buf) {
			target, err := os.Readlink(w.full(rel)) // longer than the buffer: rare
			if err != nil {
				return it, err
			}
			e.Target = target
		} else {
			e.Target = string(buf[:n])
		}
	case unix.S_IFIFO:
		e.Kind = kindFIFO
	case unix.S_IFCHR, unix.S_IFBLK:
		e.Kind, e.Rdev = kindDevice, st.Rdev
		e.Mode |= st.Mode & (unix.S_IFCHR | unix.S_IFBLK)
	default:
		return it, fmt.Errorf("%s: sockets and other special files can't be moved", w.full(rel))
	}
	if e.Kind != kindSymlink {
		x, err := w.xattrs(dfd, name, rel, buf)
		if err != nil {
			return it, err
		}
		e.Xattrs = x
	}
	it.e = e
	return it, nil
}

func (w *walker) full(rel string) string { return filepath.Join(w.root, filepath.FromSlash(rel)) }

func (w *walker) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.err = err
		w.failed.Store(true)
	}
}

// xattrs reads the extended attributes of name in dfd ("" for dfd itself) without
// following a symlink. Its full path is made only for kernels without listxattrat and
// for the values of the few files that have attributes.
func (w *walker) xattrs(dfd int, name, rel string, buf []byte) ([]xattr, error) {
	list := func(b []byte) (int, error) {
		n, err := listxattrAt(dfd, name, b)
		if errors.Is(err, unix.ENOSYS) {
			return unix.Llistxattr(w.full(rel), b)
		}
		return n, err
	}
	n, err := list(buf)
	if errors.Is(err, unix.ERANGE) {
		if n, err = list(nil); err == nil {
			buf = make([]byte, n)
			n, err = list(buf)
		}
	}
	if errors.Is(err, unix.ENOTSUP) || err == nil && n == 0 {
		return nil, nil
	}
	full := w.full(rel)
	if err != nil {
		return nil, fmt.Errorf("list the attributes of %s: %w", full, err)
	}
	var out []xattr
	for _, attr := range bytes.Split(buf[:n], []byte{0}) {
		if len(attr) == 0 {
			continue
		}
		name := string(attr)
		size, err := unix.Lgetxattr(full, name, nil)
		if err != nil {
			return nil, fmt.Errorf("read attribute %s of %s: %w", name, full, err)
		}
		val := make([]byte, size)
		if size, err = unix.Lgetxattr(full, name, val); err != nil {
			return nil, fmt.Errorf("read attribute %s of %s: %w", name, full, err)
		}
		out = append(out, xattr{Name: name, Value: val[:size]})
	}
	return out, nil
}

// noListxattrat is set once the kernel has said it lacks listxattrat (before Linux 6.13).
var noListxattrat atomic.Bool

// listxattrAt lists the attribute names of name in dfd (dfd itself if name is empty)
// into buf, without following a symlink. It fails with ENOSYS on kernels without
// listxattrat (before Linux 6.13).
func listxattrAt(dfd int, name string, buf []byte) (int, error) {
	if name == "" {
		return unix.Flistxattr(dfd, buf)
	}
	if noListxattrat.Load() {
		return 0, unix.ENOSYS
	}
	p, err := unix.BytePtrFromString(name)
	if err != nil {
		return 0, err
	}
	var b unsafe.Pointer
	if len(buf) > 0 {
		b = unsafe.Pointer(&buf[0])
	}
	n, _, errno := unix.Syscall6(unix.SYS_LISTXATTRAT, uintptr(dfd), uintptr(unsafe.Pointer(p)),
		unix.AT_SYMLINK_NOFOLLOW, uintptr(b), uintptr(len(buf)), 0)
	switch errno {
	case 0:
		return int(n), nil
	case unix.ENOSYS:
		noListxattrat.Store(true)
	}
	return 0, errno
}
