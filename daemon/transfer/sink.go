package transfer

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sync"

	"github.com/zeebo/blake3"
	"golang.org/x/sys/unix"

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
	rootAll bool
	// present is what staging held, by path (newSink), for chunkBasis; basis how much of
	// each wanted file the receiver offered by chunk hashes (delta.go), set before the
	// streams start and read-only after.
	present  map[string]presentEntry
	basis    map[uint32]int64
	finished bool
	// bases holds, for each large wanted file staging had, its size and modification
	// time before this pull (set by decide, read-only after); deltas, once such a file
	// arrived, the parts of it this pull wrote (guarded by mu). They go in staging's
	// record: the tree it replaces can be brought up to it by copying those parts only
	// (Prime).
	bases  map[uint32][2]int64
	deltas map[uint32][][2]int64
	// chunks are the chunk hashes of the large files: of those received (guarded by mu),
	// and of those kept as they were (set by decide).
	chunks map[uint32][]byte

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

// readStaging reads staging (nothing if it does not exist yet): from its record, if it
// has one and trust says to use it (treerecord.go), or else by a walk. It gives up once
// ctx ends.
func readStaging(ctx context.Context, dir string, trust bool) (staged, error) {
	if r, ok := loadTree(dir); ok && trust && r.log == "" {
		return staged{tree: r.tree, known: loadIndex(IndexPath(dir))}, nil
	}
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
		known: have.known, stamps: make([]fileStamp, len(entries)), kept: map[uint32][32]byte{}, rootAll: true,
		bases: map[uint32][2]int64{}, deltas: map[uint32][][2]int64{}, chunks: map[uint32][]byte{}}
	_, _ = s.manifest.Write(encodeManifest(entries))
	if !opts.AllowPrivileged {
		s.strip()
	}
	present, stale := sortStaging(kinds, have.tree)
	s.present, s.basis = present, map[uint32]int64{}
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
				if ok && h.Kind == kindFile && e.Size >= deltaMin {
					s.bases[uint32(i)] = [2]int64{h.Size, h.MTime}
				}
				continue
			}
			// Owner, mode and attributes already right: leave it be.
			s.settled[i] = h.UID == e.UID && h.GID == e.GID && h.Mode == e.Mode && len(e.Xattrs) == 0 && len(h.Xattrs) == 0
			s.stamps[i] = h.stamp
			if stored, ok := s.known.get(e.Path, h.stamp); ok {
				s.kept[uint32(i)] = stored.sum
				if stored.chunks != nil {
					s.chunks[uint32(i)] = stored.chunks
				}
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
	if err := DropTree(s.dir); err != nil { // staging changes from here on
		return err
	}
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

// index is what the sink knows of its files' hashes, to store beside staging.
func (s *sink) index() hashIndex {
	s.mu.Lock()
	defer s.mu.Unlock()
	x := make(hashIndex, len(s.hashes)+len(s.kept))
	for _, m := range []map[uint32][32]byte{s.kept, s.hashes} {
		for i, sum := range m {
			x[s.entries[i].Path] = storedHash{s.stamps[i], sum, s.chunks[i]}
		}
	}
	return x
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
