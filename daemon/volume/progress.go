package volume

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/drayage/drayage/cluster"
)

// Transfer kinds, as Progress.Kind says them.
const (
	KindMove = "move"
	KindCopy = "copy"
)

// Progress is how far a transfer of a volume to a node has come: a move (a Mount on
// another node, 'drayage volume move') or a copy ('drayage volume copy'). Every node sees
// it, from the cluster store.
type Progress struct {
	// Kind is KindMove or KindCopy; Copy names the new volume of a copy.
	Kind string `json:"kind"`
	Copy string `json:"copy,omitempty"`
	// From is the node sending, To the node receiving.
	From string `json:"from"`
	To   string `json:"to"`
	// Bytes of Total and Files of TotalFiles have arrived. The totals count what the
	// sender sends: a transfer that resumes, or updates an older copy, sends only what
	// differs. Both are 0 until the nodes have compared their files.
	Bytes      int64 `json:"bytes"`
	Total      int64 `json:"total"`
	Files      int   `json:"files"`
	TotalFiles int   `json:"total_files"`
	// Rate is the mean rate since Started, in bytes per second.
	Rate    int64     `json:"rate"`
	Started time.Time `json:"started"`
	Updated time.Time `json:"updated"`
}

// Percent is how much of Total has arrived, 0 to 100 (of the files, if they are all
// empty).
func (p Progress) Percent() int {
	switch {
	case p.Total > 0:
		return int(min(100, p.Bytes*100/p.Total))
	case p.TotalFiles > 0:
		return min(100, p.Files*100/p.TotalFiles)
	}
	return 0
}

// Amount says how far the transfer has come: "41%, 2.1 of 5.0 GiB", or what it is doing
// before any content moves.
func (p Progress) Amount() string {
	if p.Total == 0 && p.TotalFiles == 0 {
		return "comparing files"
	}
	return fmt.Sprintf("%d%%, %s", p.Percent(), BytesOf(p.Bytes, p.Total))
}

// String is the one-line summary 'docker volume inspect' shows in the volume's Status:
// "41% (2.1 of 5.0 GiB) from node-a, 120.0 MiB/s".
func (p Progress) String() string {
	if p.Total == 0 && p.TotalFiles == 0 {
		return fmt.Sprintf("comparing files with node %s", p.From)
	}
	s := fmt.Sprintf("%d%% (%s) from %s", p.Percent(), BytesOf(p.Bytes, p.Total), p.From)
	if p.Rate > 0 {
		s += ", " + BytesUnit(p.Rate) + "/s"
	}
	return s
}

// withRate fills Rate from Bytes and the time since Started.
func (p Progress) withRate(now time.Time) Progress {
	p.Updated = now
	if d := now.Sub(p.Started).Seconds(); d > 0 {
		p.Rate = int64(float64(p.Bytes) / d)
	}
	return p
}

var binaryUnits = []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}

// unitOf picks the binary unit for n: the largest with n at least 1 of it.
func unitOf(n int64) (float64, string) {
	i := 0
	if n > 0 {
		i = min(len(binaryUnits)-1, int(math.Log2(float64(n))/10))
	}
	return math.Pow(1024, float64(i)), binaryUnits[i]
}

// BytesOf renders part of a whole in the whole's unit: "2.1 of 5.0 GiB".
func BytesOf(part, whole int64) string {
	div, unit := unitOf(whole)
	if unit == "B" {
		return fmt.Sprintf("%d of %d B", part, whole)
	}
	return fmt.Sprintf("%.1f of %.1f %s", float64(part)/div, float64(whole)/div, unit)
}

// BytesUnit renders a byte count: "120.0 MiB".
func BytesUnit(n int64) string {
	div, unit := unitOf(n)
	if unit == "B" {
		return fmt.Sprintf("%d B", n)
	}
	return fmt.Sprintf("%.1f %s", float64(n)/div, unit)
}

// record is p as the cluster store keeps it.
func (p Progress) record() cluster.Progress {
	kind := cluster.ClaimMigrate
	if p.Kind == KindCopy {
		kind = p.Kind
	}
	return cluster.Progress{Kind: kind, Copy: p.Copy, Node: p.To, From: p.From, Bytes: p.Bytes, Total: p.Total,
		Files: p.Files, TotalFiles: p.TotalFiles, Rate: p.Rate, Started: p.Started, Updated: p.Updated}
}

// progressOf is the progress the cluster store keeps, for users.
func progressOf(r cluster.Progress) *Progress {
	kind := KindMove
	if r.Kind != cluster.ClaimMigrate {
		kind = r.Kind
	}
	return &Progress{Kind: kind, Copy: r.Copy, From: r.From, To: r.Node, Bytes: r.Bytes, Total: r.Total,
		Files: r.Files, TotalFiles: r.TotalFiles, Rate: r.Rate, Started: r.Started, Updated: r.Updated}
}

// progress reads how far the transfer that claim c runs under has come. Before the
// receiver has recorded anything (or if the store can't say) it is described from the
// claim alone.
func (m *Manager) progress(ctx context.Context, c *cluster.Claim) *Progress {
	r, err := m.reg.Progress(ctx, c.Volume)
	if err != nil {
		m.log.Warn("cannot read the progress of a transfer from the cluster store", "volume", c.Volume, "err", err)
	}
	if r == nil || r.Node != c.Node {
		r = &cluster.Progress{Kind: c.Kind, Node: c.Node, From: c.From, Started: c.Since}
	}
	return progressOf(*r)
}

// publishEvery is how often at most a transfer's progress is written to the cluster store.
const publishEvery = time.Second

// tracker keeps the progress of one transfer, and publishes it to the cluster store at
// most once per publishEvery (and when all has arrived). It is safe for concurrent use.
type tracker struct {
	publish func(Progress) // nil: kept here only

	mu   sync.Mutex
	p    Progress
	last time.Time // of the last publish
}

func newTracker(p Progress, publish func(Progress)) *tracker {
	return &tracker{p: p, publish: publish}
}

// update takes the counts the puller reports (Bytes, Total, Files, TotalFiles). The
// puller calls it from one goroutine at a time.
func (t *tracker) update(c Progress) {
	now := time.Now().UTC()
	t.mu.Lock()
	t.p.Bytes, t.p.Total, t.p.Files, t.p.TotalFiles = c.Bytes, c.Total, c.Files, c.TotalFiles
	t.p = t.p.withRate(now)
	p, due := t.p, now.Sub(t.last) >= publishEvery || (c.Bytes >= c.Total && c.Files >= c.TotalFiles)
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
func (t *tracker) get() Progress {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.p
}

// publisher writes a transfer's progress to the cluster store, under the claim it runs
// under (a transfer that lost its claim writes nothing).
func (m *Manager) publisher(claim *cluster.Claim) func(Progress) {
	return func(p Progress) {
		ctx, cancel := context.WithTimeout(m.life, 2*time.Second)
		defer cancel()
		if err := m.reg.PutProgress(ctx, claim, p.record(), m.currentLease()); err != nil {
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

// Transfer is a transfer of a volume to this node that is running now: a move (a Mount
// or 'drayage volume move') or a copy. Volume is the volume sent; a copy's new volume is
// Progress.Copy.
type Transfer struct {
	Volume string `json:"volume"`
	Progress
}

// Receiving lists the transfers of volumes to this node that are running now, with
// their progress, sorted by volume.
func (m *Manager) Receiving() []Transfer {
	var out []Transfer
	m.mu.Lock()
	for _, v := range m.vols {
		if j := v.job; j != nil && j.running() {
			out = append(out, Transfer{Volume: j.src.Name, Progress: j.track.get()})
		}
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b Transfer) int { return strings.Compare(a.Volume, b.Volume) })
	return out
}
