package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/drayage/drayage/progress"
)

// progressRecord is how a transfer's progress is kept in the store. Its fields and
// words are those nodes of earlier versions read and write: a move is a "migrate" (the
// kind of its claim), the receiver is "node", and the rate is stored.
type progressRecord struct {
	Volume     string    `json:"volume"`
	Kind       string    `json:"kind"`
	Copy       string    `json:"copy,omitempty"`
	Node       string    `json:"node"`
	From       string    `json:"from"`
	Bytes      int64     `json:"bytes"`
	Total      int64     `json:"total"`
	Files      int       `json:"files"`
	TotalFiles int       `json:"total_files"`
	Rate       int64     `json:"rate"`
	Started    time.Time `json:"started"`
	Updated    time.Time `json:"updated"`
}

func recordOf(p progress.Transfer) progressRecord {
	kind := ClaimMigrate
	switch p.Kind {
	case progress.KindCopy:
		kind = ClaimCopy
	case progress.KindSeed:
		kind = ClaimSeed
	}
	return progressRecord{Volume: p.Volume, Kind: kind, Copy: p.Copy, Node: p.To, From: p.From,
		Bytes: p.Bytes, Total: p.Total, Files: p.Files, TotalFiles: p.TotalFiles, Rate: p.Rate(),
		Started: p.Started, Updated: p.Updated}
}

func (r progressRecord) transfer() progress.Transfer {
	kind := progress.KindMove
	switch r.Kind {
	case ClaimCopy:
		kind = progress.KindCopy
	case ClaimSeed:
		kind = progress.KindSeed
	}
	return progress.Transfer{Volume: r.Volume, Kind: kind, Copy: r.Copy, From: r.From, To: r.Node,
		Counts:  progress.Counts{Bytes: r.Bytes, Total: r.Total, Files: r.Files, TotalFiles: r.TotalFiles},
		Started: r.Started, Updated: r.Updated}
}

// PutProgress records, on lease, the progress p of the transfer that claim c runs under
// (its volume is c's). It is refused with ErrClaimLost once the claim is no longer the
// one given, so a transfer that lost its claim never overwrites the next one's progress.
func (r *Registry) PutProgress(ctx context.Context, c *Claim, p progress.Transfer, lease Lease) error {
	p.Volume = c.Volume
	_, err := r.store.Txn(ctx, []Cond{{Key: r.claimKey(c.Volume), Rev: c.Rev}}, []Op{PutLeased(r.progressKey(c.Volume), encode(recordOf(p)), lease)})
	if errors.Is(err, ErrConflict) {
		return fmt.Errorf("volume %q: the claim of node %q is gone: %w", c.Volume, c.Node, ErrClaimLost)
	}
	return err
}

// DeleteProgress deletes the progress of the transfer that claim c runs under, while c
// still holds the volume (if it does not, the progress went with its lease or belongs to
// another transfer).
func (r *Registry) DeleteProgress(ctx context.Context, c *Claim) error {
	_, err := r.store.Txn(ctx, []Cond{{Key: r.claimKey(c.Volume), Rev: c.Rev}}, []Op{Delete(r.progressKey(c.Volume))})
	if errors.Is(err, ErrConflict) {
		return nil
	}
	return err
}

// Progress reads the progress of a transfer of the volume, or nil if none is recorded.
func (r *Registry) Progress(ctx context.Context, name string) (*progress.Transfer, error) {
	rec, _, err := read[progressRecord](ctx, r.store, r.progressKey(name), "progress record")
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	p := rec.transfer()
	return &p, nil
}
