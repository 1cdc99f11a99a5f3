package volume

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/progress"
)

// progress reads how far the transfer that claim c runs under has come. Before the
// receiver has recorded anything (or if the store can't say) it is described from the
// claim alone.
func (m *Manager) progress(ctx context.Context, c *cluster.Claim) *progress.Transfer {
	p, err := m.reg.Progress(ctx, c.Volume)
	if err != nil {
		m.log.Warn("cannot read the progress of a transfer from the cluster store", "volume", c.Volume, "err", err)
	}
	if p == nil || p.To != c.Node {
		kind := progress.KindMove
		switch c.Kind {
		case cluster.ClaimCopy:
			kind = progress.KindCopy
		case cluster.ClaimSeed:
			kind = progress.KindSeed
		}
		p = &progress.Transfer{Volume: c.Volume, Kind: kind, From: c.From, To: c.Node, Started: c.Since}
	}
	return p
}

// publishEvery is how often at most a transfer's progress is written to the cluster store.
const publishEvery = time.Second

// tracker keeps the progress of one transfer, and publishes it to the cluster store at
// most once per publishEvery (and when all has arrived). It is safe for concurrent use.
type tracker struct {
	publish func(progress.Transfer) // nil: kept here only

	mu   sync.Mutex
	p    progress.Transfer
	last time.Time // of the last publish
}

func newTracker(p progress.Transfer, publish func(progress.Transfer)) *tracker {
	p.Updated = p.Started
	return &tracker{p: p, publish: publish}
}

// update takes the counts the puller reports. The puller calls it from one goroutine at
// a time.
func (t *tracker) update(c progress.Counts) {
	now := time.Now().UTC()
	t.mu.Lock()
	t.p.Counts, t.p.Updated = c, now
	p, due := t.p, now.Sub(t.last) >= publishEvery || c.Complete()
	if due {
		t.last = now
	}
	t.mu.Unlock()
	if due && t.publish != nil {
		t.publish(p)
	}
}

// start publishes the progress before anything has arrived; the first counts are
// published as soon as they come.
func (t *tracker) start() {
	t.mu.Lock()
	p := t.p
	t.mu.Unlock()
	if t.publish != nil {
		t.publish(p)
	}
}

// get returns the progress so far.
func (t *tracker) get() progress.Transfer {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.p
}

// publisher writes a transfer's progress to the cluster store, under the claim it runs
// under (a transfer that lost its claim writes nothing).
func (m *Manager) publisher(claim *cluster.Claim) func(progress.Transfer) {
	return func(p progress.Transfer) {
		ctx, cancel := context.WithTimeout(m.life, 2*time.Second)
		defer cancel()
		if err := m.reg.PutProgress(ctx, claim, p, m.currentLease()); err != nil {
			m.log.Debug("cannot record the progress of a transfer", "volume", claim.Volume, "err", err)
		}
	}
}

// unpublish deletes a transfer's progress from the cluster store, before its claim is
// committed or released.
func (m *Manager) unpublish(claim *cluster.Claim) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(m.life), 2*time.Second)
	defer cancel()
	if err := m.reg.DeleteProgress(ctx, claim); err != nil {
		m.log.Debug("cannot delete the progress of a transfer; it lapses with the lease", "volume", claim.Volume, "err", err)
	}
}

// Receiving lists the transfers of volumes to this node that are running now, with
// their progress, sorted by volume: moves (a Mount or 'drayage volume move') and copies
// (the new volume is the transfer's Copy).
func (m *Manager) Receiving() []progress.Transfer {
	var out []progress.Transfer
	m.mu.Lock()
	for _, v := range m.vols {
		if j := v.job; j != nil && j.running() {
			out = append(out, j.track.get())
		}
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b progress.Transfer) int { return strings.Compare(a.Volume, b.Volume) })
	return out
}
