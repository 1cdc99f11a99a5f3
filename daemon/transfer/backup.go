package transfer

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zeebo/blake3"
	"golang.org/x/sys/unix"
)

// Blobs is where a backup keeps file content: chunks, each under its BLAKE3 hash.
// Implementations must be safe for concurrent use.
type Blobs interface {
	// Put stores data under sum, its hash. Putting a chunk stored already is harmless.
	Put(ctx context.Context, sum [32]byte, data []byte) error
	// Get returns the chunk stored under sum.
	Get(ctx context.Context, sum [32]byte) ([]byte, error)
}

// BackupOptions say how a tree is backed up.
type BackupOptions struct {
	// Previous is the last snapshot kept where this one goes, or nil: its chunks are not
	// stored again, and a file whose stored hash (hashindex.go) is the content of one of
	// its files is taken from it without being read.
	Previous *Snapshot
	// Progress, if set, hears the bytes done (read, or taken from Previous) of the total,
	// from one goroutine at a time.
	Progress func(done, total int64)
}

// BackupResult describes a finished backup.
type BackupResult struct {
	Snapshot *Snapshot
	// Read is the bytes read from disk; Reused the files taken from Previous unread.
	Read   int64
	Reused int
	// NewChunks and NewBytes count the chunks stored by this backup and their bytes
	// (before the Blobs compress them): what the backup added.
	NewChunks int
	NewBytes  int64
	// Changed are the files that changed each time they were read: kept as last read.
	Changed []string
}

// backupTries is how often a file that changes while it is read is read again.
const backupTries = 3

// Backup stores the tree at dir in blobs and returns its snapshot. Containers may write
// the tree meanwhile: each file is kept as it was at one moment (its size and times are
// checked before and after it is read, and a file that changed is read again), as a
// replica sync keeps it. The tree is never left: a mount inside it is left out.
func Backup(ctx context.Context, dir string, blobs Blobs, o BackupOptions) (BackupResult, error) {
	t, err := walk(ctx, dir)
	if err != nil {
		return BackupResult{}, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return BackupResult{}, err
	}
	defer root.Close()
	b := &backupRun{
		blobs: blobs, entries: t.entries, ctimes: t.ctimes, dirs: newDirCache(root, false),
		known: loadIndex(IndexPath(dir)), stored: map[[32]byte]bool{}, progress: o.Progress,
		snap: &Snapshot{entries: t.entries, files: map[uint32]snapshotFile{}}, index: hashIndex{},
	}
	defer b.dirs.close()
	if o.Previous != nil {
		b.previous = o.Previous.byContent()
		for c := range o.Previous.Chunks() {
			b.stored[c] = true
		}
	}
	var files []int
	for i, e := range t.entries {
		if e.Kind == kindFile {
			files = append(files, i)
			b.total += e.Size
		}
	}
	if err := forEach(ctx, len(files), func(k int) error { return b.file(ctx, files[k]) }); err != nil {
		return BackupResult{}, err
	}
	sums := make(map[uint32][32]byte, len(b.snap.files))
	for i, f := range b.snap.files {
		sums[i] = f.sum
	}
	b.snap.root = rootHashOf(b.entries, sums)
	// For the next backup or transfer, with what else was stored (a delta's chunk
	// hashes); written unsynced, so trusted until the machine restarts.
	index := maps.Clone(b.known)
	maps.Copy(index, b.index)
	_ = index.save(IndexPath(dir), false)
	return BackupResult{Snapshot: b.snap, Read: b.read.Load(), Reused: int(b.reused.Load()),
		NewChunks: b.newChunks, NewBytes: b.newBytes, Changed: b.changed}, nil
}

// backupRun is one Backup under way.
type backupRun struct {
	blobs    Blobs
	entries  []entry // written only at a file's own index, by the worker on that file
	ctimes   []int64
	dirs     *dirCache
	known    hashIndex
	previous map[[32]byte][][32]byte
	progress func(done, total int64)
	total    int64

	read, reused, done atomic.Int64

	mu        sync.Mutex
	snap      *Snapshot
	index     hashIndex
	stored    map[[32]byte]bool // chunks in Previous or stored by this run
	newChunks int
	newBytes  int64
	changed   []string
}

// file keeps entry i: from the previous snapshot if its stored hash is there, or else
// read, cut into chunks and stored.
func (b *backupRun) file(ctx context.Context, i int) error {
	e := b.entries[i]
	stamp := fileStamp{size: e.Size, mtime: e.MTime, ctime: b.ctimes[i]}
	if sum, ok := b.known.lookup(e.Path, stamp); ok {
		if chunks, ok := b.previous[sum]; ok && len(chunks) == chunksFor(e.Size) {
			b.reused.Add(1)
			b.keep(i, snapshotFile{sum: sum, chunks: chunks}, stamp, true)
			b.advance(e.Size)
			return nil
		}
	}
	for try := 1; ; try++ {
		r, err := b.readFile(ctx, e.Path)
		if err != nil {
			return err
		}
		// Steady: unchanged while read, and not changed so shortly before that a write in
		// the same clock tick would not show.
		steady := r.before == r.after && r.size == r.after.size && !r.racy
		if steady || try == backupTries {
			b.entries[i].Size, b.entries[i].MTime, b.ctimes[i] = r.size, r.after.mtime, r.after.ctime
			b.keep(i, r.file, r.after, steady)
			if !steady {
				b.mu.Lock()
				b.changed = append(b.changed, e.Path)
				b.mu.Unlock()
			}
			b.advance(r.size)
			return nil
		}
		if r.racy {
			time.Sleep(2 * racyWindow)
		}
	}
}

// keep records entry i's content in the snapshot, and its hash for the next run if the
// reading can vouch for it.
func (b *backupRun) keep(i int, f snapshotFile, stamp fileStamp, vouched bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.snap.files[uint32(i)] = f
	if vouched {
		b.index[b.entries[i].Path] = storedHash{fileStamp: stamp, sum: f.sum}
	}
}

func (b *backupRun) advance(n int64) {
	done := b.done.Add(n)
	if b.progress != nil {
		b.mu.Lock()
		b.progress(done, b.total)
		b.mu.Unlock()
	}
}

// fileRead is one reading of a file: its content's hash and chunks, and its stamps
// before and after. racy: it had changed just before it was read, so a write in the same
// clock tick would not show in its stamps.
type fileRead struct {
	file          snapshotFile
	size          int64
	before, after fileStamp
	racy          bool
}

// readFile reads the file at p whole, storing the chunks blobs lacks.
func (b *backupRun) readFile(ctx context.Context, p string) (fileRead, error) {
	var r fileRead
	fd, st, err := openRegular(b.dirs, p)
	if err != nil {
		return r, fmt.Errorf("%w; back the volume up again", err)
	}
	defer unix.Close(fd)
	r.before, r.racy = stampOf(&st), racy(&st, time.Now())
	whole := blake3.New()
	buf := chunkBuffers.Get().(*[]byte)
	defer chunkBuffers.Put(buf)
	for {
		n, err := readFull(fd, *buf, r.size)
		if err != nil {
			return r, fmt.Errorf("read %s: %w", p, err)
		}
		if n == 0 {
			break
		}
		chunk := (*buf)[:n]
		if n == len(*buf) || r.size > 0 {
			_, _ = whole.Write(chunk) // a file of one short chunk is hashed once: its hash is the chunk's
		}
		sum := blake3.Sum256(chunk)
		if err := b.put(ctx, sum, chunk); err != nil {
			return r, fmt.Errorf("store %s: %w", p, err)
		}
		r.file.chunks = append(r.file.chunks, sum)
		r.size += int64(n)
		b.read.Add(int64(n))
		if n < len(*buf) {
			break
		}
	}
	if len(r.file.chunks) == 1 && r.size < SnapshotChunk {
		r.file.sum = r.file.chunks[0]
	} else {
		whole.Sum(r.file.sum[:0])
	}
	if err := unix.Fstat(fd, &st); err != nil {
		return r, fmt.Errorf("stat %s: %w", p, err)
	}
	r.after = stampOf(&st)
	return r, nil
}

// chunkBuffers hold a chunk each while it is read and stored.
var chunkBuffers = sync.Pool{New: func() any { b := make([]byte, SnapshotChunk); return &b }}

// readFull reads from fd at off until buf is full or the file ends.
func readFull(fd int, buf []byte, off int64) (int, error) {
	n := 0
	for n < len(buf) {
		k, err := unix.Pread(fd, buf[n:], off+int64(n))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return n, err
		}
		if k == 0 {
			break
		}
		n += k
	}
	return n, nil
}

// put stores a chunk unless it is stored already (by the previous snapshot, or earlier in
// this run: a chunk two files share, or a run of zeros, is stored once).
func (b *backupRun) put(ctx context.Context, sum [32]byte, data []byte) error {
	b.mu.Lock()
	if b.stored[sum] {
		b.mu.Unlock()
		return nil
	}
	b.stored[sum] = true
	b.mu.Unlock()
	if err := b.blobs.Put(ctx, sum, data); err != nil {
		b.mu.Lock()
		delete(b.stored, sum)
		b.mu.Unlock()
		return err
	}
	b.mu.Lock()
	b.newChunks++
	b.newBytes += int64(len(data))
	b.mu.Unlock()
	return nil
}
