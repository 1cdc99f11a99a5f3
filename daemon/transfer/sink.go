package transfer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sync"

	"github.com/zeebo/blake3"
	"golang.org/x/sys/unix"

	"github.com/drayage/drayage/daemon/internal/failpoint"
	"github.com/drayage/drayage/daemon/metrics"
)

// SinkOptions limit what a sink accepts.
type SinkOptions struct {
	// AllowPrivileged admits setuid and setgid files, file capabilities, trusted.*
	// attributes and device nodes (volumes created with allow-privileged=true); without
	// it the bits and attributes are stripped and devices refused (policy.go).
	AllowPrivileged bool
	// MaxBytes bounds the sum of declared file sizes (0: only the free space bounds it).
	MaxBytes int64
	// TrustNothing has every file sent, none reused from staging: what a pull does after
	// the two ends disagreed on the tree's root hash.
	TrustNothing bool
}

// sink receives a tree into a staging directory. Every file operation is relative to
// the staging root (os.Root): no name, symlink or hardlink can reach outside it.
type sink struct {
	root    *os.Root
	dirs    *dirCache
	dir     string
	entries []entry // as they are applied: stripped of what the volume does not allow
	// manifest has hashed the manifest as the sender sent it, the root hash's start.
	manifest *blake3.Hasher
	stripped Stripped
	send     []bool // content of entries[i] comes over the wire
	settled  []bool // entries[i], a file, is already in place with the right metadata
	// settledDirs are the directories of an older copy that already look as listed;
	// Finish leaves them alone unless touched says they gained or lost an entry.
	settledDirs map[string]bool
	flow        *metrics.Flow
	space       *reservation

	// known are the hashes stored for staging's files (hashindex.go); stamps say, for
	// each file, what it looks like now, to store with its hash. kept holds the hashes of
	// the files reused from staging; verify lists the reused files with no stored hash,
	// which Finish reads and hashes.
	known  hashIndex
	stamps []fileStamp
	kept   map[uint32][32]byte
	verify []uint32
	files  map[string]uint32 // the files' indexes by path, made for the first hardlink
	// rootAll: the root hash covers every file (protocol 2), not only those sent.
	rootAll  bool
	finished bool

	mu       sync.Mutex
	touched  map[string]bool // settled directories whose entries this pull changed
	received []bool
	hashes   map[uint32][32]byte // of the files received, verified
	bytes    int64
}

// staged is what the staging dir holds from an earlier attempt or an older copy, with
// the hashes stored for it.
type staged struct {
	tree  tree
	known hashIndex
}

// readStaging reads staging (nothing if it does not exist yet). It gives up once ctx ends.
func readStaging(ctx context.Context, dir string) (staged, error) {
	t, err := walk(ctx, dir)
	if errors.Is(err, unix.ENOENT) {
		return staged{known: hashIndex{}}, nil
	}
	if err != nil {
		return staged{}, fmt.Errorf("read staging %s: %w", dir, err)
	}
	return staged{tree: t, known: loadIndex(IndexPath(dir))}, nil
}

// newSink validates the sender's manifest against the receiver's limits, makes the
// staging tree's directories, removes what the manifest does not list, and reports which
// files' content must be sent (the rest are already there, by size and modification
// time). have is what readStaging found there. It decides everything before it touches
// staging: a manifest refused leaves no trace.
func newSink(dir string, entries []entry, have staged, opts SinkOptions) (*sink, error) {
	kinds := make(map[string]kind, len(entries))
	var declared int64
	for _, e := range entries {
		if err := e.Validate(opts.AllowPrivileged, func(p string) (kind, bool) { k, ok := kinds[p]; return k, ok }); err != nil {
			return nil, err
		}
		if _, dup := kinds[e.Path]; dup {
			return nil, fmt.Errorf("%w: %q listed twice", ErrHostile, e.Path)
		}
		kinds[e.Path] = e.Kind
		if e.Size > math.MaxInt64-declared {
			return nil, fmt.Errorf("%w: the volume declares more than %d bytes", ErrHostile, int64(math.MaxInt64))
		}
		declared += e.Size
	}
	if len(entries) == 0 || entries[0].Path != "." {
		return nil, fmt.Errorf("%w: the manifest does not start with the volume root", ErrHostile)
	}
	if opts.MaxBytes > 0 && declared > opts.MaxBytes {
		return nil, fmt.Errorf("%w: the volume declares %d bytes, above its limit of %d", ErrHostile, declared, opts.MaxBytes)
	}
	s := &sink{dir: dir, entries: entries, manifest: blake3.New(), send: make([]bool, len(entries)), settled: make([]bool, len(entries)),
		received: make([]bool, len(entries)), hashes: map[uint32][32]byte{}, settledDirs: map[string]bool{}, touched: map[string]bool{},
		known: have.known, stamps: make([]fileStamp, len(entries)), kept: map[uint32][32]byte{}, rootAll: true}
	_, _ = s.manifest.Write(encodeManifest(entries))
	if !opts.AllowPrivileged {
		s.strip()
	}
	present, stale := sortStaging(kinds, have.tree)
	need := s.decide(present, opts.TrustNothing)
	// Staging lives beside the volume, on the same filesystem as its parent.
	var err error
	if s.space, err = space.reserve(filepath.Dir(dir), need); err != nil {
		return nil, err
	}
	if err := s.prepare(present, stale); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

// strip takes the privileged content off the entries to apply (policy.go); the root hash
// still covers the manifest as sent.
func (s *sink) strip() {
	copied := false
	for i, e := range s.entries {
		if u, changed := e.unprivileged(); changed {
			if !copied {
				s.entries, copied = slices.Clone(s.entries), true
			}
			s.entries[i] = u
			s.stripped.add(e.Path)
		}
	}
}

// Stripped says what privileged content the sink took off, for a volume that does not
// allow it.
func (s *sink) Stripped() Stripped { return s.stripped }

// presentEntry is an entry staging holds, and its stamp.
type presentEntry struct {
	entry
	stamp fileStamp
}

// sortStaging sorts what staging holds into what stays, by path (listed, as the same
// kind), and what goes (the rest, but for what is inside a directory that goes).
func sortStaging(kinds map[string]kind, have tree) (present map[string]presentEntry, stale []entry) {
	present = make(map[string]presentEntry, len(have.entries))
	removed := map[string]bool{}
	inRemoved := func(p string) bool {
		for d := path.Dir(p); d != "." && d != "/"; d = path.Dir(d) {
			if removed[d] {
				return true
			}
		}
		return false
	}
	for i, h := range have.entries {
		if inRemoved(h.Path) {
			continue
		}
		if k, listed := kinds[h.Path]; listed && k == h.Kind {
			present[h.Path] = presentEntry{h, have.stamp(i)}
			continue
		}
		stale = append(stale, h)
		if h.Kind == kindDir {
			removed[h.Path] = true
		}
	}
	return present, stale
}

// decide says which files' content must be sent and which are already in place, and
// returns the bytes that will arrive. A file reused from staging has its stored hash, or
// is listed to be read and hashed; with trustNothing, every file is sent.
func (s *sink) decide(present map[string]presentEntry, trustNothing bool) int64 {
	var need int64
	for i, e := range s.entries {
		switch e.Kind {
		case kindDir:
			if h, ok := present[e.Path]; ok && sameMeta(e, h.entry) {
				s.settledDirs[e.Path] = true
			}
		case kindFile:
			h, ok := present[e.Path]
			s.send[i] = !ok || !sameContent(e, h.entry) || trustNothing
			if s.send[i] {
				need += e.Size
				continue
			}
			// Owner, mode and attributes already right: leave it be.
			s.settled[i] = h.UID == e.UID && h.GID == e.GID && h.Mode == e.Mode && len(e.Xattrs) == 0 && len(h.Xattrs) == 0
			s.stamps[i] = h.stamp
			if sum, ok := s.known.lookup(e.Path, h.stamp); ok {
				s.kept[uint32(i)] = sum
			} else {
				s.verify = append(s.verify, uint32(i))
			}
		}
	}
	return need
}

// prepare makes staging hold only what the manifest lists: it removes the stale entries
// and makes the missing directories.
func (s *sink) prepare(present map[string]presentEntry, stale []entry) error {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return err
	}
	root, err := os.OpenRoot(s.dir)
	if err != nil {
		return err
	}
	s.root, s.dirs = root, newDirCache(root, true)
	for _, h := range stale {
		if err := s.root.RemoveAll(h.Path); err != nil {
			return fmt.Errorf("clear %s in staging: %w", h.Path, err)
		}
		s.touched[path.Dir(h.Path)] = true
	}
	for _, e := range s.entries {
		if _, ok := present[e.Path]; e.Kind != kindDir || ok || e.Path == "." {
			continue
		}
		if err := s.root.Mkdir(e.Path, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("make %s: %w", e.Path, err)
		}
		s.touched[path.Dir(e.Path)] = true
	}
	return nil
}

// sameMeta reports whether have already has the owner, mode, time and attributes of e.
func sameMeta(e, have entry) bool {
	return e.UID == have.UID && e.GID == have.GID && e.Mode == have.Mode && e.MTime == have.MTime &&
		slices.EqualFunc(e.Xattrs, have.Xattrs, func(a, b xattr) bool { return a.Name == b.Name && string(a.Value) == string(b.Value) })
}

// touch records that the directory holding p gains or loses an entry, which changes its
// modification time. Only a settled directory needs it: in a fresh pull there is none,
// and a new file costs no lock.
func (s *sink) touch(p string) {
	d := path.Dir(p)
	if !s.settledDirs[d] { // read-only once prepare is done
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.touched[d] = true
}

// Wanted lists the indexes of the files whose content the sender must send.
func (s *sink) Wanted() []uint32 {
	var out []uint32
	for i, w := range s.send {
		if w {
			out = append(out, uint32(i))
		}
	}
	return out
}

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

func (s *sink) receiveFile(fr *frameReader, index uint32, size int64, h *blake3.Hasher) (err error) {
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
			_ = unix.Unlinkat(d.fd, base, 0) // nothing unverified stays
			s.mu.Lock()
			s.received[index] = false
			s.mu.Unlock()
		}
	}()
	h.Reset()
	var off, flushed int64
	endsInHole := false
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
			_, _ = h.Write(fm.Payload)
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
		case frameHole:
			n := holeLength(fm.Payload)
			if n <= 0 || n > size-off { // never off+n: a hole of 2^63-1 would overflow it
				return fmt.Errorf("%w: %q: hole beyond its declared size", ErrHostile, e.Path)
			}
			if reused { // the old content there must become a hole
				if err := unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n); err != nil {
					return fmt.Errorf("%s: %w", e.Path, err)
				}
			}
			hashZeros(h, n)
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

// Finish checks that every wanted file arrived, creates links and special files, applies
// every entry's metadata (directories last, deepest first, so their times stick) and makes
// it all durable with one syncfs. A directory of an older copy that already looks as
// listed and gained or lost no entry is left alone: on a small delta, rewriting every
// directory's times would make the sync write an inode in every block group. It returns
// the tree's root hash. ctx bounds the reading of the files reused from staging that
// have no stored hash.
func (s *sink) Finish(ctx context.Context) ([32]byte, error) {
	for i, want := range s.send {
		if want && !s.received[i] {
			return [32]byte{}, fmt.Errorf("%s never arrived", s.entries[i].Path)
		}
	}
	for i, e := range s.entries {
		var err error
		switch e.Kind {
		case kindFile:
			if !s.send[i] && !s.settled[i] {
				s.stamps[i], err = s.withFile(e.Path, unix.O_RDONLY, e)
			}
		case kindSymlink:
			err = s.replace(e.Path, func() error { return s.root.Symlink(e.Target, e.Path) })
			if err == nil {
				err = s.metaAt(e)
			}
		case kindHardlink:
			err = s.replace(e.Path, func() error { return s.root.Link(e.Target, e.Path) })
			if err == nil {
				err = s.restamp(e.Target) // a new link changes the file's change time
			}
		case kindFIFO:
			err = s.replace(e.Path, func() error { return s.mknod(e) })
			if err == nil {
				_, err = s.withFile(e.Path, unix.O_RDONLY|unix.O_NONBLOCK, e)
			}
		case kindDevice: // never opened: opening a device can act on it
			err = s.replace(e.Path, func() error { return s.mknod(e) })
			if err == nil {
				err = s.metaAt(e)
			}
		}
		if err != nil {
			return [32]byte{}, fmt.Errorf("%s: %w", e.Path, err)
		}
	}
	var dirs []int
	for i, e := range s.entries {
		if e.Kind == kindDir {
			dirs = append(dirs, i)
		}
	}
	for _, i := range slices.Backward(dirs) {
		e := s.entries[i]
		if s.settledDirs[e.Path] && !s.touched[e.Path] {
			continue
		}
		if _, err := s.withFile(e.Path, unix.O_RDONLY|unix.O_DIRECTORY, e); err != nil {
			return [32]byte{}, fmt.Errorf("%s: %w", e.Path, err)
		}
	}
	if err := s.hashReused(ctx); err != nil {
		return [32]byte{}, err
	}
	failpoint.Hit("pull-finish")
	if err := s.sync(); err != nil {
		return [32]byte{}, fmt.Errorf("sync staging %s: %w", s.dir, err)
	}
	s.finished = true
	if err := s.index().save(IndexPath(s.dir), true); err != nil {
		return [32]byte{}, fmt.Errorf("staging %s: %w", s.dir, err)
	}
	return s.rootHash(), nil
}

// restamp reads again the stamp of file p, changed since it was taken.
func (s *sink) restamp(p string) error {
	if s.files == nil {
		s.files = make(map[string]uint32)
		for i, e := range s.entries {
			if e.Kind == kindFile {
				s.files[e.Path] = uint32(i)
			}
		}
	}
	d, base, release, err := s.dirs.split(p)
	if err != nil {
		return err
	}
	defer release()
	var st unix.Stat_t
	if err := unix.Fstatat(d.fd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	s.stamps[s.files[p]] = stampOf(&st)
	return nil
}

// rootHash is the tree's root hash: over the manifest as sent and every file's content
// hash, or, for a sender that speaks protocol 1, only the files it sent.
func (s *sink) rootHash() [32]byte {
	if !s.rootAll {
		return rootHash(s.manifest.Clone(), len(s.entries), s.hashes)
	}
	all := maps.Clone(s.hashes)
	maps.Copy(all, s.kept)
	return rootHash(s.manifest.Clone(), len(s.entries), all)
}

// hashReused reads and hashes the files reused from staging that have no stored hash,
// several at once.
func (s *sink) hashReused(ctx context.Context) error {
	sums := make([][32]byte, len(s.verify))
	err := forEach(ctx, len(s.verify), func(k int) error {
		var err error
		sums[k], err = hashFile(ctx, s.dirs, s.entries[s.verify[k]].Path)
		return err
	})
	if err != nil {
		return fmt.Errorf("verify staging %s: %w", s.dir, err)
	}
	for k, i := range s.verify {
		s.kept[i] = sums[k]
	}
	return nil
}

// index is what the sink knows of its files' hashes, to store beside staging.
func (s *sink) index() hashIndex {
	s.mu.Lock()
	defer s.mu.Unlock()
	x := make(hashIndex, len(s.hashes)+len(s.kept))
	for _, m := range []map[uint32][32]byte{s.kept, s.hashes} {
		for i, sum := range m {
			x[s.entries[i].Path] = storedHash{s.stamps[i], sum}
		}
	}
	return x
}

// sync makes staging durable: every file system has one journal, or none, so one syncfs
// costs far less than an fsync per file.
func (s *sink) sync() error {
	d, release, err := s.dirs.open(".")
	if err != nil {
		return err
	}
	defer release()
	return unix.Syncfs(d.fd)
}

// Close releases the staging root.
func (s *sink) Close() error {
	space.release(s.space)
	if s.root == nil { // refused before staging was opened
		return nil
	}
	if !s.finished {
		// The files verified so far are kept for the next attempt, and so are their
		// hashes; staging was not synced, so they hold until the machine restarts.
		if x := s.index(); len(x) > 0 {
			_ = x.save(IndexPath(s.dir), false)
		}
	}
	s.dirs.close()
	return s.root.Close()
}

// replace removes whatever is at p (not a directory), then creates it with mk.
func (s *sink) replace(p string, mk func() error) error {
	s.touch(p)
	if err := s.root.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return mk()
}

// withFile opens p, which was there before this transfer, with flags and gives it e's
// metadata, dropping attributes it had that e has not. It returns the file's stamp as it
// is then.
func (s *sink) withFile(p string, flags int, e entry) (fileStamp, error) {
	d, base, release, err := s.dirs.split(p) // "." splits into "." and "."
	if err != nil {
		return fileStamp{}, err
	}
	defer release()
	fd, err := d.open(base, flags, 0)
	if err != nil {
		return fileStamp{}, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fileStamp{}, err
	}
	if err := dropOtherXattrs(fd, e); err != nil {
		return fileStamp{}, err
	}
	if err := setMeta(fd, e, looksOf(&st)); err != nil {
		return fileStamp{}, err
	}
	if err := unix.Fstat(fd, &st); err != nil {
		return fileStamp{}, err
	}
	return stampOf(&st), nil
}

func (s *sink) mknod(e entry) error {
	d, base, release, err := s.dirs.split(e.Path)
	if err != nil {
		return err
	}
	defer release()
	mode := uint32(unix.S_IFIFO)
	if e.Kind == kindDevice {
		mode = e.Mode & (unix.S_IFCHR | unix.S_IFBLK)
	}
	return unix.Mknodat(d.fd, base, mode|0o600, int(e.Rdev))
}

// metaAt sets owner, mode and times by name, without opening or following it (symlinks,
// devices).
func (s *sink) metaAt(e entry) error {
	d, base, release, err := s.dirs.split(e.Path)
	if err != nil {
		return err
	}
	defer release()
	if err := unix.Fchownat(d.fd, base, int(e.UID), int(e.GID), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	if e.Kind == kindDevice {
		if err := unix.Fchmodat(d.fd, base, e.Mode&0o7777, 0); err != nil {
			return err
		}
	}
	ts := []unix.Timespec{unix.NsecToTimespec(e.MTime), unix.NsecToTimespec(e.MTime)}
	return unix.UtimesNanoAt(d.fd, base, ts, unix.AT_SYMLINK_NOFOLLOW)
}
