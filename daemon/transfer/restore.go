package transfer

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"sync"

	"github.com/zeebo/blake3"
)

// A snapshot is one more sender, like an archive (archive.go): Restore fetches the chunks
// of the files staging lacks, checks each against its hash, and feeds them to the sink a
// pull uses, which checks the manifest as it checks a peer's. The tree it makes is then
// checked against the snapshot's root hash.

// RestoreOptions say how a snapshot is restored.
type RestoreOptions struct {
	Sink SinkOptions
	// Progress, if set, hears the bytes written of those staging lacked, from one
	// goroutine at a time.
	Progress func(done, total int64)
}

// restoreAhead is how many chunks are fetched ahead of the one being written.
const restoreAhead = 8

// Restore fills staging with the tree of snap, its content from blobs, and makes it
// durable there; Install then puts it in place. An interrupted restore resumes from the
// files it finished. Errors wrap ErrHostile (a manifest no pull would accept), ErrCorrupt
// (a chunk or file that is not what the snapshot says) or ErrRootMismatch.
func Restore(ctx context.Context, staging string, snap *Snapshot, blobs Blobs, o RestoreOptions) (UnpackResult, error) {
	var res UnpackResult
	have, err := readStaging(ctx, staging, false)
	if err != nil {
		return res, err
	}
	s, err := newSink(staging, snap.entries, have, o.Sink)
	if err != nil {
		return res, err
	}
	defer s.Close()
	res.Entries, res.Stripped = len(snap.entries), s.Stripped()
	wanted := s.Wanted()
	res.Files = len(wanted)
	for _, e := range snap.entries {
		res.Total += e.Size
	}
	if err := restoreFiles(ctx, s, snap, blobs, wanted, o.Progress); err != nil {
		return res, err
	}
	res.Written = s.Bytes()
	if res.RootHash, err = s.Finish(ctx); err != nil {
		return res, err
	}
	if res.RootHash != snap.root {
		return res, fmt.Errorf("%w: the restored tree in %s hashes to %x, the snapshot says %x", ErrRootMismatch, filepath.Base(staging), res.RootHash[:8], snap.root[:8])
	}
	return res, nil
}

// restoreFiles feeds the wanted files to the sink on restoreStreams streams at once, as a
// pull's data streams would come: each stream a run of files in manifest order (so the
// small files of one pack go together).
func restoreFiles(ctx context.Context, s *sink, snap *Snapshot, blobs Blobs, wanted []uint32, report func(done, total int64)) error {
	var total, done int64
	for _, i := range wanted {
		total += snap.entries[i].Size
	}
	var mu sync.Mutex
	progress := func(n int64) {
		mu.Lock()
		defer mu.Unlock()
		if done += n; report != nil {
			report(done, total)
		}
	}
	// The first stream to fail stops the others.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	streams := min(restoreStreams, len(wanted))
	var wg sync.WaitGroup
	for k := range streams {
		part := wanted[k*len(wanted)/streams : (k+1)*len(wanted)/streams]
		wg.Go(func() {
			if err := restoreStream(ctx, s, snap, blobs, part, progress); err != nil {
				cancel(err)
			}
		})
	}
	wg.Wait()
	return context.Cause(ctx)
}

// restoreStreams is how many streams a restore feeds the sink on.
const restoreStreams = 4

// restoreStream feeds the files to the sink on one stream, their chunks fetched ahead.
func restoreStream(ctx context.Context, s *sink, snap *Snapshot, blobs Blobs, files []uint32, progress func(int64)) error {
	f := newChunkFetcher(ctx, snap, blobs, files)
	defer f.stop()
	return feedSink(s, func(fw *frameWriter) error {
		buf := make([]byte, chunkSize)
		h := blake3.New()
		for _, i := range files {
			e, want := snap.entries[i], snap.files[i].sum
			if err := sendFile(ctx, f, fw, i, e.Size, buf, h, &want); err != nil {
				return fmt.Errorf("restore %s: %w", e.Path, err)
			}
			progress(e.Size)
		}
		return fw.Write(frameDone, nil)
	})
}

// chunkFetcher reads the chunks of the wanted files in order, as one stream, fetching up
// to restoreAhead of them at once.
type chunkFetcher struct {
	next   chan chan fetched // in stream order
	cur    []byte
	cancel context.CancelFunc
	done   chan struct{}
	gets   sync.WaitGroup
}

type fetched struct {
	data []byte
	err  error
}

func newChunkFetcher(ctx context.Context, snap *Snapshot, blobs Blobs, wanted []uint32) *chunkFetcher {
	ctx, cancel := context.WithCancel(ctx)
	f := &chunkFetcher{next: make(chan chan fetched, restoreAhead), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(f.done)
		defer close(f.next)
		for _, i := range wanted {
			e, file := snap.entries[i], snap.files[i]
			for k, sum := range file.chunks {
				size := min(SnapshotChunk, e.Size-int64(k)*SnapshotChunk)
				ch := make(chan fetched, 1)
				select {
				case f.next <- ch:
				case <-ctx.Done():
					return
				}
				f.gets.Go(func() { ch <- fetchChunk(ctx, blobs, e.Path, k, sum, size) })
			}
		}
	}()
	return f
}

// fetchChunk gets chunk k of the file at p and checks it is the size and hash expected.
func fetchChunk(ctx context.Context, blobs Blobs, p string, k int, sum [32]byte, size int64) fetched {
	data, err := blobs.Get(ctx, sum)
	switch {
	case err != nil:
		err = fmt.Errorf("fetch chunk %d of %s (%x): %w", k, p, sum[:8], err)
	case int64(len(data)) != size:
		err = fmt.Errorf("%w: chunk %d of %s (%x) holds %d bytes, not %d", ErrCorrupt, k, p, sum[:8], len(data), size)
	case blake3.Sum256(data) != sum:
		err = fmt.Errorf("%w: chunk %d of %s is not the content stored as %x", ErrCorrupt, k, p, sum[:8])
	}
	return fetched{data: data, err: err}
}

// Read reads the stream of chunks.
func (f *chunkFetcher) Read(p []byte) (int, error) {
	for len(f.cur) == 0 {
		ch, ok := <-f.next
		if !ok {
			return 0, io.EOF
		}
		r := <-ch
		if r.err != nil {
			return 0, r.err
		}
		f.cur = r.data
	}
	n := copy(p, f.cur)
	f.cur = f.cur[n:]
	return n, nil
}

// stop ends the fetching and waits for every goroutine it started.
func (f *chunkFetcher) stop() {
	f.cancel()
	for range f.next { //nolint:revive // drained so the starter never blocks
	}
	<-f.done
	f.gets.Wait()
}
