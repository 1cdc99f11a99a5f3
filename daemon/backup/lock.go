package backup

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/minio/minio-go/v7"
)

// The location's lock. Backups and prunes of one location must not overlap: a prune
// could remove what a backup elsewhere is about to name. Within a node the running
// keylock keeps them apart; across nodes (a volume that moved while its old owner still
// backs it up, two volumes given one prefix) a lease in the location does: PREFIX/lock
// names the node that writes, until when. A node takes it by writing it, waiting
// lockSettle and reading it back (the last writer wins, and each writer reads back after
// writing: two writers that both saw no lock can't both read their own), renews it
// while it works, checks it is still its own before it saves a snapshot or removes
// anything, and removes it when done. A node that died leaves a lease that lapses after
// lockTTL; the same node (restarted) takes its own lease over at once.

// ErrBusy means another node is backing up to, or pruning, the location.
var ErrBusy = errors.New("another node is writing to the backup location")

const (
	lockTTL    = 2 * time.Minute
	lockSettle = time.Second
)

// lease is the lock's content.
type lease struct {
	Node    string    `json:"node"`
	Volume  string    `json:"volume"`
	Token   string    `json:"token"`
	Expires time.Time `json:"expires"`
}

// lock is a lease this node holds.
type lock struct {
	r     *Repo
	lease lease
}

func (r *Repo) lockKey() string { return r.loc.Prefix + "lock" }

// readLease reads the lock (ok false: there is none).
func (r *Repo) readLease(ctx context.Context) (l lease, ok bool, err error) {
	obj, err := r.c.GetObject(ctx, r.loc.Bucket, r.lockKey(), minio.GetObjectOptions{})
	if err == nil {
		var b []byte
		b, err = io.ReadAll(io.LimitReader(obj, 4096))
		obj.Close()
		if err == nil {
			if jerr := json.Unmarshal(b, &l); jerr != nil {
				return lease{}, false, nil // damaged: as good as none
			}
			return l, true, nil
		}
	}
	if minio.ToErrorResponse(err).Code == "NoSuchKey" {
		return lease{}, false, nil
	}
	return lease{}, false, r.fail("read the lock", err)
}

func (r *Repo) writeLease(ctx context.Context, l lease) error {
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	_, err = r.c.PutObject(ctx, r.loc.Bucket, r.lockKey(), bytes.NewReader(b), int64(len(b)), minio.PutObjectOptions{ContentType: "application/json", DisableMultipart: true})
	if err != nil {
		return r.fail("write the lock", err)
	}
	return nil
}

// busy says who holds the location.
func (r *Repo) busy(l lease) error {
	return fmt.Errorf("%s: %w: node %q (for volume %q) until %s at the latest; wait for it, then retry",
		r.loc, ErrBusy, l.Node, l.Volume, l.Expires.UTC().Format(time.RFC3339))
}

// acquire takes the location's lock for node, backing volume up.
func (r *Repo) acquire(ctx context.Context, node, volume string) (*lock, error) {
	held, ok, err := r.readLease(ctx)
	if err != nil {
		return nil, err
	}
	if ok && held.Node != node && time.Now().Before(held.Expires) {
		return nil, r.busy(held)
	}
	token := make([]byte, 16)
	_, _ = rand.Read(token)
	lk := &lock{r: r, lease: lease{Node: node, Volume: volume, Token: hex.EncodeToString(token), Expires: time.Now().Add(lockTTL)}}
	if err := r.writeLease(ctx, lk.lease); err != nil {
		return nil, err
	}
	select {
	case <-time.After(lockSettle):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if err := lk.check(ctx); err != nil {
		return nil, err
	}
	return lk, nil
}

// check returns an error unless the lock is still this one's.
func (lk *lock) check(ctx context.Context) error {
	held, ok, err := lk.r.readLease(ctx)
	if err != nil {
		return err
	}
	if !ok || held.Token != lk.lease.Token {
		if ok {
			return lk.r.busy(held)
		}
		return fmt.Errorf("%s: %w: this node's lock on it was removed; retry", lk.r.loc, ErrBusy)
	}
	return nil
}

// keep renews the lease until ctx ends; if it can't, or finds another node's, it ends
// the work with cancel.
func (lk *lock) keep(ctx context.Context, cancel context.CancelCauseFunc) {
	t := time.NewTicker(lockTTL / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := lk.check(ctx); err != nil {
			cancel(err)
			return
		}
		lk.lease.Expires = time.Now().Add(lockTTL)
		if err := lk.r.writeLease(ctx, lk.lease); err != nil && ctx.Err() == nil {
			cancel(err)
			return
		}
	}
}

// release removes the lock if it is still this one's.
func (lk *lock) release() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if lk.check(ctx) == nil {
		_ = lk.r.c.RemoveObject(ctx, lk.r.loc.Bucket, lk.r.lockKey(), minio.RemoveObjectOptions{})
	}
}
