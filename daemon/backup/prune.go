package backup

import (
	"context"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/minio/minio-go/v7"

	"github.com/drayage/drayage/daemon/internal/failpoint"
	"github.com/drayage/drayage/daemon/transfer"
)

// Pruned is what a prune removed.
type Pruned struct {
	// Snapshots are the IDs of the snapshots removed.
	Snapshots []string `json:"snapshots,omitempty"`
	// Objects and Bytes count the objects removed (chunks, and packs of small chunks)
	// and their stored (compressed) bytes.
	Objects int   `json:"objects"`
	Bytes   int64 `json:"bytes"`
}

// Prune keeps the newest keep snapshots (at least one) and removes the others, then the
// chunks and packs no remaining snapshot needs (doc.go says why a prune cut off at any
// point loses no remaining snapshot). It takes the location's lock for node.
func (r *Repo) Prune(ctx context.Context, node string, keep int) (Pruned, error) {
	unlock := running.Lock(r.loc.Bucket + "/" + r.loc.Prefix)
	defer unlock()
	lk, err := r.acquire(ctx, node, "")
	if err != nil {
		return Pruned{}, err
	}
	defer lk.release()
	return r.prune(ctx, keep, lk, nil)
}

// prune is Prune under the lock lk. saved, if set, is the snapshot the caller just
// saved: what it needs is kept even if a listing does not show it yet.
func (r *Repo) prune(ctx context.Context, keep int, lk *lock, saved *transfer.Snapshot) (Pruned, error) {
	var p Pruned
	keep = max(keep, 1)
	ids, err := r.listIDs(ctx)
	if err != nil {
		return p, err
	}
	if len(ids) > keep {
		if err := lk.check(ctx); err != nil {
			return p, err
		}
	}
	for len(ids) > keep {
		if err := r.c.RemoveObject(ctx, r.loc.Bucket, r.snapshotKey(ids[0]), minio.RemoveObjectOptions{}); err != nil {
			return p, r.fail("remove snapshot "+ids[0], err)
		}
		p.Snapshots = append(p.Snapshots, ids[0])
		ids = ids[1:]
		failpoint.Hit("prune-snapshot-removed")
		if hook := testHookSnapshotRemoved; hook != nil {
			hook()
		}
	}
	named, err := r.namedChunks(ctx)
	if err != nil {
		return p, err
	}
	if saved != nil {
		r.mu.Lock()
		for c := range saved.Chunks() {
			named[r.nameOf(c)] = true
		}
		r.mu.Unlock()
	}
	if err := lk.check(ctx); err != nil {
		return p, err
	}
	p.Objects, p.Bytes, err = r.removeChunks(ctx, named)
	return p, err
}

// nameOf is the hash part of the name of the object chunk c is in (r.mu held): its
// pack's, or its own.
func (r *Repo) nameOf(c [32]byte) string {
	if l, ok := r.locs[c]; ok {
		return hex.EncodeToString(l.pack[:])
	}
	return hex.EncodeToString(c[:])
}

// removeChunks removes the chunks and packs not named, and counts them and their bytes:
// the chunks stored on their own first, then the packs.
func (r *Repo) removeChunks(ctx context.Context, named map[string]bool) (n int, bytes int64, err error) {
	for _, dir := range []string{"objects/", "packs/"} {
		dn, db, err := r.removeUnder(ctx, dir, named)
		n, bytes = n+dn, bytes+db
		if err != nil {
			return n, bytes, err
		}
		failpoint.Hit("prune-" + strings.TrimSuffix(dir, "/") + "-removed")
	}
	return n, bytes, nil
}

// removeUnder removes the objects under the location's dir that are not named, listing
// and removing at once.
func (r *Repo) removeUnder(ctx context.Context, dir string, named map[string]bool) (n int, bytes int64, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	doomed := make(chan minio.ObjectInfo)
	listed := make(chan error, 1)
	go func() {
		defer close(doomed)
		for o := range r.c.ListObjects(ctx, r.loc.Bucket, minio.ListObjectsOptions{Prefix: r.loc.Prefix + dir, Recursive: true}) {
			if o.Err != nil {
				listed <- r.fail("list chunks", o.Err)
				return
			}
			if named[chunkOf(o.Key)] {
				continue
			}
			select {
			case doomed <- o:
				n++
				bytes += o.Size
			case <-ctx.Done():
				listed <- ctx.Err()
				return
			}
		}
		listed <- nil
	}()
	for e := range r.c.RemoveObjects(ctx, r.loc.Bucket, doomed, minio.RemoveObjectsOptions{}) {
		if e.Err != nil && err == nil {
			err = r.fail("remove chunk "+e.ObjectName, e.Err)
			cancel()
		}
	}
	for range doomed { //nolint:revive // drained so the lister ends
	}
	if lerr := <-listed; err == nil {
		err = lerr
	}
	return n, bytes, err
}

// testHookSnapshotRemoved, if set, runs after each snapshot a prune removes.
var testHookSnapshotRemoved func()

// namedChunks reads every snapshot of the location and returns the objects they need:
// the chunks stored on their own and the packs that hold the others, by the hash part
// of their names. A snapshot that can't be read is an error: what it needs can't be
// known.
func (r *Repo) namedChunks(ctx context.Context) (map[string]bool, error) {
	ids, err := r.listIDs(ctx)
	if err != nil {
		return nil, err
	}
	named := map[string]bool{}
	for _, id := range ids {
		_, s, locs, err := r.load(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("keep every chunk: %w; if that snapshot is damaged, remove it by hand, then back up with --keep again", err)
		}
		for c := range s.Chunks() {
			if l, ok := locs[c]; ok {
				named[hex.EncodeToString(l.pack[:])] = true
			} else {
				named[hex.EncodeToString(c[:])] = true
			}
		}
	}
	return named, nil
}

// chunkOf is the hash part of a chunk's object name.
func chunkOf(key string) string { return key[strings.LastIndexByte(key, '/')+1:] }
