package backup

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"sync"

	"github.com/zeebo/blake3"

	"github.com/drayage/drayage/daemon/internal/failpoint"
	"github.com/drayage/drayage/daemon/transfer"
)

// Packs. A chunk smaller than packMin (a small file, or the end of a larger one) goes
// into the open pack with other chunks; a pack of packSize bytes or more is written as
// packs/XX/HASH (HASH the BLAKE3 of its bytes), and the rest when the backup ends,
// before its snapshot. A pack is the chunks' compressed bytes one after the other; each
// snapshot lists, for the chunks it names that live in packs, the pack, offset and length
// (snapshots.go). A restore reads a pack whole once and takes its chunks from it
// (packCache). A prune removes a pack once no snapshot names a chunk in it.

const (
	// packMin is the smallest chunk stored as an object of its own.
	packMin = 512 << 10
	// packSize is the size at which the open pack is written.
	packSize = 8 << 20
	// maxPack bounds a pack read back: the open pack is written once past packSize, by
	// less than a chunk's compressed bytes.
	maxPack = packSize + packMin*2
	// keepPacks is how many packs a restore keeps in memory at once: two for each of
	// the streams it restores on (transfer's restoreStreams, 4).
	keepPacks = 8
)

// chunkLoc is where a chunk lives in a pack.
type chunkLoc struct {
	pack   [32]byte
	off, n uint32
}

// pendingChunk is a chunk in the open pack.
type pendingChunk struct {
	sum    [32]byte
	off, n uint32
}

// addToPack adds a compressed chunk to the open pack, and writes the pack if it is full.
func (r *Repo) addToPack(ctx context.Context, sum [32]byte, z []byte) error {
	r.mu.Lock()
	r.pending = append(r.pending, pendingChunk{sum: sum, off: uint32(len(r.open)), n: uint32(len(z))})
	r.open = append(r.open, z...)
	if len(r.open) < packSize {
		r.mu.Unlock()
		return nil
	}
	pack, chunks := r.takePack()
	r.mu.Unlock()
	return r.writePack(ctx, pack, chunks)
}

// takePack takes the open pack out, for writing. r.mu is held.
func (r *Repo) takePack() ([]byte, []pendingChunk) {
	pack, chunks := r.open, r.pending
	r.open, r.pending = nil, nil
	return pack, chunks
}

// Flush writes the open pack, if it holds anything: a backup calls it once every chunk
// is put, before it saves its snapshot.
func (r *Repo) Flush(ctx context.Context) error {
	r.mu.Lock()
	pack, chunks := r.takePack()
	r.mu.Unlock()
	if len(chunks) == 0 {
		return nil
	}
	return r.writePack(ctx, pack, chunks)
}

// writePack writes a pack under its hash, then records where its chunks are.
func (r *Repo) writePack(ctx context.Context, pack []byte, chunks []pendingChunk) error {
	sum := blake3.Sum256(pack)
	if err := r.putObject(ctx, r.packKey(sum), pack); err != nil {
		return r.fail(fmt.Sprintf("store a pack of %d chunks", len(chunks)), err)
	}
	r.mu.Lock()
	for _, c := range chunks {
		r.locs[c.sum] = chunkLoc{pack: sum, off: c.off, n: c.n}
	}
	r.mu.Unlock()
	failpoint.Hit("backup-chunk-stored")
	return nil
}

func (r *Repo) packKey(sum [32]byte) string {
	h := hex.EncodeToString(sum[:])
	return r.loc.Prefix + "packs/" + h[:2] + "/" + h
}

// fromPack returns chunk sum's compressed bytes from its pack.
func (r *Repo) fromPack(ctx context.Context, sum [32]byte, loc chunkLoc) ([]byte, error) {
	pack, err := r.packs.get(loc.pack, func() ([]byte, error) {
		b, err := r.read(ctx, r.packKey(loc.pack), maxPack)
		if err == nil && blake3.Sum256(b) != loc.pack {
			err = fmt.Errorf("%w: pack %x in %s is not the content stored under its name", transfer.ErrCorrupt, loc.pack[:8], r.loc)
		}
		return b, err
	})
	if err != nil {
		return nil, err
	}
	if end := uint64(loc.off) + uint64(loc.n); end > uint64(len(pack)) {
		return nil, fmt.Errorf("%w: chunk %x lies past the end of pack %x in %s", transfer.ErrCorrupt, sum[:8], loc.pack[:8], r.loc)
	}
	return pack[loc.off : loc.off+loc.n], nil
}

// packCache keeps the packs read last; a pack asked for by several readers at once is
// read once.
type packCache struct {
	mu    sync.Mutex
	packs map[[32]byte]*cachedPack
	order [][32]byte // oldest first
}

type cachedPack struct {
	done chan struct{}
	data []byte
	err  error
}

// get returns the pack named sum, read with read if it is not kept.
func (c *packCache) get(sum [32]byte, read func() ([]byte, error)) ([]byte, error) {
	c.mu.Lock()
	if c.packs == nil {
		c.packs = map[[32]byte]*cachedPack{}
	}
	p, ok := c.packs[sum]
	if !ok {
		p = &cachedPack{done: make(chan struct{})}
		c.packs[sum] = p
		c.order = append(c.order, sum)
		if len(c.order) > keepPacks {
			delete(c.packs, c.order[0])
			c.order = c.order[1:]
		}
	}
	c.mu.Unlock()
	if !ok {
		p.data, p.err = read()
		if p.err != nil {
			c.mu.Lock()
			if c.packs[sum] == p { // the next reader tries again
				delete(c.packs, sum)
				c.order = slices.DeleteFunc(c.order, func(s [32]byte) bool { return s == sum })
			}
			c.mu.Unlock()
		}
		close(p.done)
	}
	<-p.done
	return p.data, p.err
}

// Pack locations in a snapshot object: a count, then for each chunk its hash, its
// pack's hash, its offset and its length.

// encodeLocs appends the locations of the chunks in named that live in packs.
func (r *Repo) encodeLocs(b []byte, named func(func([32]byte) bool)) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[[32]byte]bool{}
	var locs []pendingChunk
	var packs [][32]byte
	named(func(c [32]byte) bool {
		if l, ok := r.locs[c]; ok && !seen[c] {
			seen[c] = true
			locs = append(locs, pendingChunk{sum: c, off: l.off, n: l.n})
			packs = append(packs, l.pack)
		}
		return true
	})
	b = binary.AppendUvarint(b, uint64(len(locs)))
	for i, l := range locs {
		b = append(b, l.sum[:]...)
		b = append(b, packs[i][:]...)
		b = binary.AppendUvarint(b, uint64(l.off))
		b = binary.AppendUvarint(b, uint64(l.n))
	}
	return b
}

// decodeLocs reads what encodeLocs wrote.
func decodeLocs(b []byte) (map[[32]byte]chunkLoc, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b))/66 {
		return nil, fmt.Errorf("%w: its pack locations are damaged", transfer.ErrHostile)
	}
	b = b[k:]
	locs := make(map[[32]byte]chunkLoc, n)
	for range n {
		if len(b) < 66 {
			return nil, fmt.Errorf("%w: its pack locations are cut short", transfer.ErrHostile)
		}
		var sum [32]byte
		var l chunkLoc
		b = b[copy(sum[:], b):]
		b = b[copy(l.pack[:], b):]
		off, k1 := binary.Uvarint(b)
		if k1 <= 0 || off > maxPack {
			return nil, fmt.Errorf("%w: a pack offset is damaged", transfer.ErrHostile)
		}
		b = b[k1:]
		size, k2 := binary.Uvarint(b)
		if k2 <= 0 || size > maxPack {
			return nil, fmt.Errorf("%w: a pack length is damaged", transfer.ErrHostile)
		}
		b = b[k2:]
		l.off, l.n = uint32(off), uint32(size)
		locs[sum] = l
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after its pack locations", transfer.ErrHostile, len(b))
	}
	return locs, nil
}
