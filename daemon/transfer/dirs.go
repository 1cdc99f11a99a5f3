package transfer

import (
	"errors"
	"os"
	"path"
	"sync"

	"golang.org/x/sys/unix"
)

// A volume of small files costs a handful of system calls per file on each side, and on
// a virtual machine each costs microseconds: that, not the disk or the network, limits a
// transfer of many small files. So per-file work goes through raw *at calls on a
// descriptor of the file's directory, with no os.File (which adds a poller registration,
// fcntl calls and a stat per file).
//
// That stays as safe as os.Root: each directory is opened through the tree's os.Root,
// which never resolves a name out of the tree, and the per-file calls take a single
// validated name component (entry.Validate refuses "/", "." and "..") with O_NOFOLLOW, so
// they can only touch that directory's own entry.

// dir is an open directory of a tree, and what a file created in it inherits.
type dir struct {
	f  *os.File
	fd int
	// gid is the group a new file gets: the directory's if it is setgid, else ours.
	gid uint32
	// defaultACL says the directory hands a POSIX ACL to what is created in it.
	defaultACL bool
}

// openDir opens directory p of root; with inherit, it also reads what files created in
// it inherit (a sender, which creates nothing, does without).
func openDir(root *os.Root, p string, inherit bool) (*dir, error) {
	f, err := root.OpenFile(p, os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	d := &dir{f: f, fd: int(f.Fd()), gid: egid}
	if !inherit {
		return d, nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(d.fd, &st); err != nil {
		f.Close()
		return nil, err
	}
	if st.Mode&unix.S_ISGID != 0 {
		d.gid = st.Gid
	}
	_, err = unix.Fgetxattr(d.fd, aclDefault, nil)
	d.defaultACL = err == nil
	return d, nil
}

// open opens the entry name of d, never following a symlink.
func (d *dir) open(name string, flags int, perm uint32) (int, error) {
	for {
		fd, err := unix.Openat(d.fd, name, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
		if !errors.Is(err, unix.EINTR) {
			return fd, err
		}
	}
}

// create opens name for writing its new content, and says how the file looks now and how
// long it was (-1 for a new file). A regular file already there with no other links is
// written over in place: freeing its blocks or its inode and allocating new ones would
// read the allocation bitmaps of its block group, one disk read per file for the changed
// files of an older copy spread over many directories. Anything else there is unlinked
// first; a file with other hard links must not be written through.
func (d *dir) create(name string, perm uint32) (fd int, now looks, oldSize int64, err error) {
	const flags = unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL
	fd, err = d.open(name, flags, perm)
	if !errors.Is(err, unix.EEXIST) {
		return fd, d.fresh(perm), -1, err
	}
	if fd, now, size, ok := d.reuse(name); ok {
		return fd, now, size, nil
	}
	if err := unix.Unlinkat(d.fd, name, 0); err != nil {
		return -1, looks{}, -1, err
	}
	fd, err = d.open(name, flags, perm)
	return fd, d.fresh(perm), -1, err
}

// reuse opens name for writing if it is a regular file with one link.
func (d *dir) reuse(name string) (int, looks, int64, bool) {
	var st unix.Stat_t
	if err := unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil ||
		st.Mode&unix.S_IFMT != unix.S_IFREG || st.Nlink != 1 {
		return -1, looks{}, -1, false
	}
	// Read and write: the parts a delta leaves as they are are read for the file's hash.
	fd, err := d.open(name, unix.O_RDWR|unix.O_NONBLOCK, 0)
	if err != nil {
		return -1, looks{}, -1, false
	}
	var now unix.Stat_t
	if err := unix.Fstat(fd, &now); err != nil || now.Ino != st.Ino || now.Dev != st.Dev {
		unix.Close(fd) // replaced meanwhile
		return -1, looks{}, -1, false
	}
	l := looksOf(&now)
	l.mode = modeUnknown // writing may clear setuid and setgid
	return fd, l, now.Size, true
}

// dirCache keeps the directories of a tree open, so that work on many files of one
// directory resolves the directory once instead of once per file.
type dirCache struct {
	root    *os.Root
	inherit bool // see openDir
	mu      sync.Mutex
	dirs    map[string]*dir
}

// maxCachedDirs bounds the open directory handles.
const maxCachedDirs = 512

func newDirCache(root *os.Root, inherit bool) *dirCache {
	return &dirCache{root: root, inherit: inherit, dirs: map[string]*dir{}}
}

// split returns p's directory and p's base name. release must be called when done with
// the directory.
func (c *dirCache) split(p string) (d *dir, base string, release func(), err error) {
	d, release, err = c.open(path.Dir(p))
	return d, path.Base(p), release, err
}

// open returns the directory name of the tree. release must be called when done with it.
func (c *dirCache) open(name string) (d *dir, release func(), err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d, ok := c.dirs[name]; ok {
		return d, func() {}, nil
	}
	d, err = openDir(c.root, name, c.inherit)
	if err != nil {
		return nil, nil, err
	}
	if len(c.dirs) >= maxCachedDirs {
		return d, func() { d.f.Close() }, nil
	}
	c.dirs[name] = d
	return d, func() {}, nil
}

// close closes the cached directories.
func (c *dirCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, d := range c.dirs {
		d.f.Close()
	}
	c.dirs = map[string]*dir{}
}
