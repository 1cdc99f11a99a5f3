package backup

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/drayage/drayage/daemon/internal/keylock"
	"github.com/drayage/drayage/daemon/transfer"
)

// ErrOtherVolume means a location holds the backups of another volume: each volume gets
// its own prefix, so that a prune of one never races a backup of another.
var ErrOtherVolume = errors.New("the location holds another volume's backups")

// Request is one backup of a volume's tree.
type Request struct {
	Volume, Node string
	// Dir is the volume's tree.
	Dir string
	// Keep, if above 0, prunes all but the newest Keep snapshots after the backup.
	Keep int
	// Progress, if set, hears the bytes done of the total.
	Progress func(done, total int64)
}

// Result describes a finished backup.
type Result struct {
	Location string `json:"location"`
	Snapshot Info   `json:"snapshot"`
	// Read is the bytes read from the volume; Reused the files taken unread from the
	// previous snapshot.
	Read   int64 `json:"read_bytes"`
	Reused int   `json:"reused_files"`
	// Changed are the files that changed each time they were read, kept as last read.
	Changed []string `json:"changed,omitempty"`
	// Previous is the snapshot this one was made from ("": none), or why none could be
	// used.
	Previous string        `json:"previous,omitempty"`
	Pruned   *Pruned       `json:"pruned,omitempty"`
	Took     time.Duration `json:"took"`
}

// running keeps one backup or prune per location at a time on this node.
var running keylock.Locks

// Run backs the tree up: from the location's latest snapshot if it is this volume's,
// chunks it lacks stored, the snapshot written last; then, with Keep, a prune.
func (r *Repo) Run(ctx context.Context, req Request) (Result, error) {
	unlock := running.Lock(r.loc.Bucket + "/" + r.loc.Prefix)
	defer unlock()
	start := time.Now()
	res := Result{Location: r.loc.String()}
	lk, err := r.acquire(ctx, req.Node, req.Volume)
	if err != nil {
		return res, fmt.Errorf("cannot back volume %q up: %w", req.Volume, err)
	}
	defer lk.release()
	ctx, cancel := context.WithCancelCause(ctx)
	kept := make(chan struct{})
	go func() { defer close(kept); lk.keep(ctx, cancel) }()
	defer func() { cancel(nil); <-kept }()
	res, err = r.run(ctx, req, lk, res)
	if cause := context.Cause(ctx); err != nil && cause != nil && !errors.Is(err, cause) {
		err = fmt.Errorf("%w (%w)", err, cause) // the lock was lost
	}
	res.Took = time.Since(start)
	return res, err
}

// run is Run under the lock lk.
func (r *Repo) run(ctx context.Context, req Request, lk *lock, res Result) (Result, error) {
	prev, previous, after, err := r.previous(ctx, req.Volume)
	if err != nil {
		return res, err
	}
	res.Previous = previous
	b, err := transfer.Backup(ctx, req.Dir, r, transfer.BackupOptions{Previous: prev, Progress: req.Progress})
	if err != nil {
		return res, fmt.Errorf("back volume %q up to %s: %w", req.Volume, r.loc, err)
	}
	if err := r.Flush(ctx); err != nil {
		return res, fmt.Errorf("back volume %q up: %w", req.Volume, err)
	}
	s := b.Snapshot
	// A snapshot sorts after the one before it, whatever the clocks of the nodes that
	// took them say.
	now := time.Now().UTC()
	if !now.After(after) {
		now = after.Add(time.Millisecond)
	}
	res.Snapshot = Info{ID: newID(now, s.Root()), Time: now, Volume: req.Volume, Node: req.Node, Root: s.Root(),
		Entries: s.Entries(), Files: s.Files(), Size: s.Size(), NewBytes: b.NewBytes, NewChunks: b.NewChunks}
	if err := lk.check(ctx); err != nil {
		return res, fmt.Errorf("back volume %q up: %w", req.Volume, err)
	}
	if err := r.Save(ctx, res.Snapshot, s); err != nil {
		return res, fmt.Errorf("back volume %q up: %w", req.Volume, err)
	}
	res.Read, res.Reused, res.Changed = b.Read, b.Reused, b.Changed
	if req.Keep > 0 {
		p, err := r.prune(ctx, req.Keep, lk, s)
		res.Pruned = &p
		if err != nil {
			return res, fmt.Errorf("volume %q: snapshot %s is saved, but pruning %s failed (the next backup with --keep prunes again): %w", req.Volume, res.Snapshot.ID, r.loc, err)
		}
	}
	return res, nil
}

// otherVolume refuses a backup of volume to a location holding other's snapshots.
func (r *Repo) otherVolume(volume, other, id string) error {
	return fmt.Errorf("cannot back volume %q up to %s: %w (volume %q, snapshot %s); give each volume its own prefix, such as %s%s/",
		volume, r.loc, ErrOtherVolume, other, id, r.loc, volume)
}

// previous loads the location's latest snapshot, which a backup of volume starts from.
// A location holding another volume's is refused; one whose latest snapshot can't be
// read gives no previous snapshot (everything is stored again), and says why.
// after is the latest snapshot's time, which the next one's must follow.
func (r *Repo) previous(ctx context.Context, volume string) (s *transfer.Snapshot, previous string, after time.Time, err error) {
	ids, err := r.listIDs(ctx)
	if err != nil || len(ids) == 0 {
		return nil, "", after, err
	}
	id := ids[len(ids)-1]
	if t, err := time.Parse(idTime, id[:min(len(id), len(idTime))]); err == nil {
		after = t
	}
	if head, err := r.info(ctx, id); err == nil && head.Volume != volume {
		return nil, "", after, r.otherVolume(volume, head.Volume, id)
	}
	info, s, err := r.Load(ctx, id)
	switch {
	case errors.Is(err, transfer.ErrHostile):
		return nil, fmt.Sprintf("none: the latest snapshot, %s, can't be read (%v)", id, err), after, nil
	case err != nil:
		return nil, "", after, err
	case info.Volume != volume:
		return nil, "", after, r.otherVolume(volume, info.Volume, id)
	}
	return s, id, after, nil
}
