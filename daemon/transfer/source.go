package transfer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/drayage/drayage/daemon/metrics"
)

// source sends a tree's files. The tree is opened as an os.Root, so a symlink never leads
// the sender out of the volume.
type source struct {
	// read says how the tree was read (metrics.TreeWalked, metrics.TreeFromChanges) and
	// walkedFor, for a walk, why.
	read, walkedFor string
	root            *os.Root
	indexPath       string // where its hashes are stored
	place           place  // the tree's file system and mount
	dirs            *dirCache
	entries         []entry
	tree            tree // entries' stamps, and the mount points inside the tree, left out
	flow            *metrics.Flow
	// known are the hashes stored for the tree (hashindex.go); hashed is closed once the
	// files not sent have their hashes, stored or read (hashErr if one could not be read).
	known   hashIndex
	hashed  chan struct{}
	hashErr error

	// ready hands the wanted files, opened, to the streams that send them. ctx ends the
	// work Want starts (opening the wanted files, hashing the others), and work waits for
	// it; cancel ends ctx at Close.
	ready     chan opened
	ctx       context.Context
	cancel    context.CancelFunc
	work      sync.WaitGroup
	closeOnce sync.Once

	mu     sync.Mutex
	closed bool                // Close has begun: Want starts nothing more
	hashes map[uint32][32]byte // every file's, sent or not, as they become known
	wanted []bool              // by entry, from Want
	bytes  int64
	// changed are the files that changed while they were sent (Changed).
	changed []string
	// live: the tree may be written while it is sent (a replica sync): a file changed
	// within racyWindow of its reading counts as changed. Set before Want.
	live bool
	// basis holds the receiver's chunk hashes of its copies of some wanted files, by
	// entry (delta.go); set before Want.
	basis map[uint32][]byte
}

// opened is a wanted file, open for reading (fd), or why it could not be.
type opened struct {
	index uint32
	fd    int
	err   error
}

// Reading ahead: the files next in line are opened, and their first bytes asked of the
// disk, this far ahead of the streams that send them. Small files read from a cold cache
// one at a time per stream wait on the disk for each; asked for ahead, many reads are in
// flight at once.
const (
	readAheadFiles = 128
	readAheadBytes = 1 << 20
)

// newSource reads the tree at dir (readVolume) and returns a source for it with its
// manifest. The source never leaves dir's file system: mount points inside it are left
// out (MountPoints). ctx bounds the reading and the source's life: once it ends, the
// work Want started stops (Close must still be called).
func newSource(ctx context.Context, dir string, how reading) (*source, error) {
	t, via, why, err := readVolume(ctx, dir, how)
	if err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	return &source{read: via, walkedFor: why, root: root, place: t.place, dirs: newDirCache(root, false), entries: t.entries, tree: t,
		known: loadIndex(IndexPath(dir)), indexPath: IndexPath(dir), hashes: map[uint32][32]byte{},
		ctx: ctx, cancel: cancel, hashed: make(chan struct{})}, nil
}

// MountPoints lists the mount points inside the tree that the source left out.
func (s *source) MountPoints() []string { return s.tree.mounts }

// Manifest is the tree as walked.
func (s *source) Manifest() []entry { return s.entries }

// Close stops the work Want started and waits for it, then releases the tree, and the
// files opened ahead that no stream sent. Call it once no Send runs.
func (s *source) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		ready := s.ready
		s.mu.Unlock()
		s.cancel()
		s.work.Wait()
		if ready != nil {
			for o := range ready {
				if o.err == nil {
					unix.Close(o.fd)
				}
			}
		}
		s.saveIndex()
		s.dirs.close()
		err = s.root.Close()
	})
	return err
}

// saveIndex stores the hashes the source knows, for its next transfer. The tree was not
// synced for it, so they hold until the machine restarts, or until a file changes.
func (s *source) saveIndex() {
	if s.Wanted() {
		<-s.hashed
	}
	s.mu.Lock()
	x := make(hashIndex, len(s.hashes))
	for i, sum := range s.hashes {
		x[s.entries[i].Path] = storedHash{fileStamp: s.tree.stamp(int(i)), sum: sum}
	}
	s.mu.Unlock()
	_ = x.save(s.indexPath, false)
}

// Wanted reports whether Want was called.
func (s *source) Wanted() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ready != nil
}

// Want says which files to send, in what order: Send sends them. It may be called once,
// before Close. The goroutines it starts, one opening the wanted files ahead of the
// streams and a few hashing the others, end with the source's context or Close.
func (s *source) Want(indexes []uint32) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errors.New("the transfer ended")
	}
	if s.ready != nil {
		s.mu.Unlock()
		return errors.New("the wanted files were already given; the receiver sent Want twice")
	}
	ready := make(chan opened, readAheadFiles)
	s.ready = ready
	s.wanted = make([]bool, len(s.entries))
	for _, i := range indexes {
		if int(i) < len(s.wanted) {
			s.wanted[i] = true
		}
	}
	s.work.Add(2)
	s.mu.Unlock()
	go func() {
		defer s.work.Done()
		s.hashUnsent()
	}()
	go func() {
		defer s.work.Done()
		defer close(ready)
		for _, index := range indexes {
			o := s.open(index)
			select {
			case ready <- o:
			case <-s.ctx.Done():
				if o.err == nil {
					unix.Close(o.fd)
				}
				return
			}
		}
	}()
	return nil
}

// hashUnsent gives every file not wanted its hash, for the root hash that covers them
// all: the stored one if the file has not changed since, or else by reading it. It runs
// alongside the streams and closes hashed when done.
func (s *source) hashUnsent() {
	defer close(s.hashed)
	var read []uint32
	s.mu.Lock()
	for i, e := range s.entries {
		if e.Kind != kindFile || s.wanted[i] {
			continue
		}
		if sum, ok := s.known.lookup(e.Path, s.tree.stamp(i)); ok {
			s.hashes[uint32(i)] = sum
		} else {
			read = append(read, uint32(i))
		}
	}
	s.mu.Unlock()
	sums := make([][32]byte, len(read))
	err := forEach(s.ctx, len(read), func(k int) error {
		var err error
		sums[k], err = hashFile(s.ctx, s.dirs, s.entries[read[k]].Path)
		return err
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.hashErr = err
		return
	}
	for k, i := range read {
		s.hashes[i] = sums[k]
	}
}

// open opens a wanted file and asks the disk for its first bytes.
func (s *source) open(index uint32) opened {
	o := opened{index: index, fd: -1}
	if int(index) >= len(s.entries) || s.entries[index].Kind != kindFile {
		o.err = fmt.Errorf("entry %d is not a file", index)
		return o
	}
	e := s.entries[index]
	d, base, release, err := s.dirs.split(e.Path)
	if err != nil {
		o.err = fmt.Errorf("open the directory of %s: %w", e.Path, err)
		return o
	}
	defer release()
	// O_NONBLOCK: a FIFO put in the file's place must not block the open.
	if o.fd, err = d.open(base, unix.O_RDONLY|unix.O_NONBLOCK, 0); err != nil {
		o.err = fmt.Errorf("open %s: %w", e.Path, err)
		return o
	}
	if e.Size > 0 {
		_ = unix.Fadvise(o.fd, 0, min(e.Size, readAheadBytes), unix.FADV_WILLNEED)
	}
	return o
}

// RootHash is the hash of the tree: its manifest and every file's content hash. Call it
// once every stream has ended.
func (s *source) RootHash() ([32]byte, error) { return s.rootHash(true) }

// rootHash is RootHash, or with all false the hash of protocol 1: the manifest and only
// the files sent.
func (s *source) rootHash(all bool) ([32]byte, error) {
	if !all {
		s.mu.Lock()
		defer s.mu.Unlock()
		sent := make(map[uint32][32]byte, len(s.hashes))
		for i, sum := range s.hashes {
			if s.wanted != nil && s.wanted[i] {
				sent[i] = sum
			}
		}
		return rootHashOf(s.entries, sent), nil
	}
	if !s.Wanted() {
		return [32]byte{}, errors.New("no files wanted yet")
	}
	<-s.hashed
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hashErr != nil {
		return [32]byte{}, fmt.Errorf("hash the files the receiver had already: %w", s.hashErr)
	}
	return rootHashOf(s.entries, s.hashes), nil
}
