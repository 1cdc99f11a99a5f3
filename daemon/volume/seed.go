package volume

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/daemon/localstore"
	"github.com/drayage/drayage/daemon/seed/source"
	"github.com/drayage/drayage/progress"
)

// A volume created with -o from=URL is made at once, empty and marked Filling in its
// record here, and this node (its owner) fills it in the background: a seed job, on the
// same jobs as pulls (pull.go), under a seed claim that keeps other nodes from mounting,
// moving or copying it. The job downloads the archive and unpacks it into the volume's
// staging tree through the Seeder (the daemon's: seed and transfer.Unpack), trying again
// after a failure that may pass, then installs the tree and records it (FinishSeed). A
// Mount meanwhile waits for the job within its budget, then answers ErrPulling with the
// progress; the container never sees a half-filled volume. A restarted daemon takes the
// job up again (Reconcile), resuming the download and the unpack where they were. A
// source that refuses for good (no such archive, a wrong sha256, a hostile archive)
// leaves no volume: it is removed, and the log and any waiting Mount say why.

// Seeder fills a volume's staging tree from its source.
type Seeder interface {
	// Seed downloads the archive r names (resuming into r.Download), checks it and
	// unpacks it into r.Staging. An error that trying again does not cure wraps
	// ErrSeedRefused.
	Seed(ctx context.Context, r SeedRequest) (Pulled, error)
}

// SeedRequest is one fill of a volume from its source.
type SeedRequest struct {
	Volume string
	// From and SHA256 are the volume's options.
	From, SHA256 string
	// Staging is where the tree is unpacked; Download where the archive downloads to.
	Staging, Download string
	// AllowPrivileged: the volume's allow-privileged option.
	AllowPrivileged bool
	// Progress, if set, hears how far the fill has come, from one goroutine at a time.
	Progress func(progress.Counts)
}

// ErrSeedRefused means a volume's source will not fill it, whatever the tries: the
// archive is missing, refused, not the sha256 given, or hostile.
var ErrSeedRefused = errors.New("the volume's source can't fill it")

// seedRetry bounds the wait between two tries of a fill that failed.
const (
	seedRetryFirst = 2 * time.Second
	seedRetryMax   = time.Minute
)

// filled refuses a copy still being filled from its source (stillFilling, ErrPulling).
func (m *Manager) filled(rec localstore.Record) error {
	if rec.Filling {
		return stillFilling{tell(ErrPulling, "volume %q on node %q is still being filled from %s; see how far with 'drayage volume inspect %s'",
			rec.Name, m.cfg.Node, sourceOf(rec.Options), rec.Name)}
	}
	return nil
}

// stillFilling is filled's refusal: a Mount on the volume's own node waits for the fill
// instead (mount.go), with no second read of the volume's record.
type stillFilling struct{ error }

func (e stillFilling) Unwrap() error { return e.error }

// sourceOf is a volume's from option as logs and messages show it (no query).
func sourceOf(opts map[string]string) string {
	src, err := source.Parse(opts[optFrom], opts[optSHA256])
	if err != nil {
		return opts[optFrom]
	}
	return src.String()
}

// joinSeed joins the fill of volume e running here, or claims the volume and starts one.
// The caller holds the volume's lock, and calls await after unlocking (or m.unwait).
func (m *Manager) joinSeed(ctx context.Context, e cluster.Entry) (*pullJob, error) {
	name := e.Volume.Name
	// A fill tries again until it is done, so one that ended without its volume was
	// aborted, or its volume removed: what it said is no news to the next.
	m.with(name, func(v *local) {
		if v.job != nil && !v.job.running() {
			v.job = nil
		}
	})
	if j, err := m.joinJob(name); j != nil || err != nil {
		return j, err
	}
	if err := m.stopping(); err != nil {
		return nil, err
	}
	if m.cfg.Seeder == nil {
		return nil, fmt.Errorf("volume %q: node %q can't fill volumes from a source (no seeder configured)", name, m.cfg.Node)
	}
	from := sourceOf(e.Volume.Options)
	claim, err := m.reg.BeginSeed(ctx, name, m.cfg.Node, from, m.currentLease())
	if err != nil {
		return nil, m.refused(ctx, name, "fill", "retry when it is done", err)
	}
	track := newTracker(progress.Transfer{Volume: name, Kind: progress.KindSeed, From: from, To: m.cfg.Node, Started: time.Now().UTC()}, m.publisher(claim))
	j := &pullJob{key: name, src: e.Volume, claim: claim, track: track, seedParts: seedParts{abort: make(chan struct{})}}
	j.fill = func(ctx context.Context) (Pulled, error) { return m.fill(ctx, j) }
	j.commit = func(ctx context.Context, got Pulled) error { return m.commitSeed(ctx, j, got) }
	j.failed = func(ctx context.Context, err error) { m.seedFailed(ctx, j, err) }
	return m.startJob(ctx, j)
}

// startSeed starts the fill of a volume held here that nobody waits for (yet): at its
// creation, and when Reconcile finds one not running. The caller holds its lock.
func (m *Manager) startSeed(ctx context.Context, e cluster.Entry) {
	j, err := m.joinSeed(ctx, e)
	if err != nil {
		m.log.Warn("cannot start filling a volume from its source; will retry", "volume", e.Volume.Name, "from", sourceOf(e.Volume.Options), "err", err)
		return
	}
	m.with(j.key, func(*local) { j.waiters-- })
}

// fillPoll is how often a node waiting for another node's fill reads the volume's claim.
const fillPoll = 500 * time.Millisecond

// awaitFill waits, as long as ctx allows less a margin to answer, for the fill of
// volume e on another node to end (its seed claim gone). If it does not end in time it
// returns ErrPulling with the fill's progress, as a pull that takes longer does.
func (m *Manager) awaitFill(ctx context.Context, e cluster.Entry) error {
	wait, cancel := answerBy(ctx)
	defer cancel()
	c := e.Claim
	t := time.NewTicker(fillPoll)
	defer t.Stop()
	for {
		select {
		case <-wait.Done():
			return tell(ErrPulling, "volume %q is still being filled from %s on node %q: %s; it continues in the background: %s",
				c.Volume, c.From, c.Node, m.progress(ctx, c).Amount(), mountHint)
		case <-t.C:
		}
		now, err := m.reg.Get(wait, c.Volume)
		if err != nil || now.Claim == nil || now.Claim.Kind != cluster.ClaimSeed {
			return nil // filled, gone, or held otherwise: the Mount reads it again
		}
	}
}

// keepFilling takes up the fill of a volume held here that is not filled yet and has
// no fill running (a daemon restarted), and records a fill whose record could not be
// written when it ended. It reports whether the volume is still filling. The caller
// holds its lock.
func (m *Manager) keepFilling(ctx context.Context, rec localstore.Record, e cluster.Entry) bool {
	if rec.Filling {
		if e.Volume.Removing {
			return false // the removal goes ahead (keepClaims)
		}
		running := false
		m.with(rec.Name, func(v *local) { running = v.job != nil && v.job.running() })
		if !running {
			m.log.Info("taking up filling a volume from its source", "volume", rec.Name, "from", sourceOf(rec.Options))
			m.startSeed(ctx, e)
		}
		return true
	}
	if c := e.Claim; c != nil && c.Kind == cluster.ClaimSeed && c.Node == m.cfg.Node {
		size, err := m.disk.Size(rec.Name)
		if err == nil {
			_, err = m.reg.FinishSeed(ctx, rec.Name, m.cfg.Node, rec.Epoch, size, rec.Root)
		}
		if err != nil {
			m.log.Warn("cannot record a filled volume in the cluster store; will retry", "volume", rec.Name, "err", err)
		}
	}
	return false
}

// fill runs the Seeder until the volume is filled, the source refuses for good, or the
// job is aborted or the manager stops; a failure that may pass is tried again, the wait
// doubling up to seedRetryMax.
func (m *Manager) fill(ctx context.Context, j *pullJob) (Pulled, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-j.abort:
			cancel()
		case <-ctx.Done():
		}
	}()
	name, opts := j.key, j.src.Options
	req := SeedRequest{Volume: name, From: opts[optFrom], SHA256: opts[optSHA256], Staging: m.disk.StagingDir(name),
		Download: m.disk.DownloadPath(name), AllowPrivileged: AllowsPrivileged(opts), Progress: j.track.update}
	for wait := seedRetryFirst; ; wait = min(2*wait, seedRetryMax) {
		got, err := m.cfg.Seeder.Seed(ctx, req)
		switch {
		case err == nil:
			return got, nil
		case errors.Is(err, ErrSeedRefused):
			return got, err
		case ctx.Err() != nil:
			return got, fmt.Errorf("volume %q: filling it on node %q stopped (%w); the next start of drayage there resumes it", name, m.cfg.Node, context.Cause(ctx))
		}
		m.log.Warn("filling a volume from its source failed; trying again", "volume", name, "from", sourceOf(opts), "in", wait, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
}

// commitSeed installs the filled tree as the volume's data and records it, which drops
// the seed claim. The caller holds the volume's lock.
func (m *Manager) commitSeed(ctx context.Context, j *pullJob, got Pulled) error {
	name := j.key
	rec, err := m.disk.Load(name)
	if err != nil {
		return fmt.Errorf("volume %q on node %q: %w", name, m.cfg.Node, err)
	}
	rec.Filling, rec.Root = false, got.Root
	if err := m.disk.Install(rec, m.disk.StagingDir(name)); err != nil {
		return fmt.Errorf("volume %q on node %q: %w", name, m.cfg.Node, err)
	}
	m.dropDownload(name)
	if _, err := m.reg.FinishSeed(ctx, name, m.cfg.Node, j.claim.Epoch, got.Size, got.Root); err != nil {
		// The volume is filled here: Reconcile records it (keepClaims).
		m.log.Warn("filled a volume but could not record it in the cluster store yet; will retry", "volume", name, "err", err)
	}
	m.log.Info("filled volume from its source", "volume", name, "from", sourceOf(j.src.Options), "bytes", got.Size,
		"downloaded", got.Sent, "took", time.Since(j.track.get().Started).Round(time.Millisecond))
	if m.replicated(j.src.Options) {
		m.scheduleSync(name, time.Now(), false)
	}
	return nil
}

// seedFailed acts on a fill that ended without its volume: a source that refused for
// good leaves no volume (and says why); a fill cut short by its volume's removal leaves
// no download. The caller holds the volume's lock.
func (m *Manager) seedFailed(ctx context.Context, j *pullJob, err error) {
	name := j.key
	if _, lerr := m.disk.Load(name); errors.Is(lerr, localstore.ErrNotExist) {
		m.dropDownload(name) // removed while it filled
		return
	}
	if !errors.Is(err, ErrSeedRefused) {
		return // the download and staging stay for the next try
	}
	m.log.Error("the volume's source can't fill it; removing the volume: create it again once the source is right",
		"volume", name, "node", m.cfg.Node, "from", sourceOf(j.src.Options), "err", err)
	if derr := m.disk.Delete(name); derr != nil && !errors.Is(derr, localstore.ErrNotExist) {
		m.log.Error("cannot delete a volume whose source refused to fill it", "volume", name, "err", derr)
		return
	}
	m.dropDownload(name)
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if ferr := m.reg.FinishRemoval(cctx, j.src); ferr != nil {
		m.log.Error("cannot remove the cluster record of a volume whose source refused to fill it; remove it with 'drayage volume rm'", "volume", name, "err", ferr)
	}
}

// dropDownload deletes what the fill of volume name downloaded and unpacked.
func (m *Manager) dropDownload(name string) {
	m.disk.DropDownload(name)
	m.disk.DropStaging(name)
}

// giveUpFill stops the fill of volume e, held here, so that it can be removed: the
// job, if one runs, ends (and its staging and download go once it has the lock), and
// the seed claim goes at once. The caller holds the volume's lock.
func (m *Manager) giveUpFill(ctx context.Context, e cluster.Entry) error {
	name := e.Volume.Name
	m.with(name, func(v *local) {
		if j := v.job; j != nil && j.running() && j.abort != nil {
			j.abortOnce.Do(func() { close(j.abort) })
		}
	})
	if c := e.Claim; c != nil && c.Kind == cluster.ClaimSeed && c.Node == m.cfg.Node {
		if err := m.reg.Release(ctx, c); err != nil {
			return m.storeErr("remove volume "+name, err)
		}
		m.log.Info("stopped filling a volume from its source: it is being removed", "volume", name, "from", c.From)
	}
	return nil
}

// seedParts are the fields of a pull job that a seed job uses (pull.go).
type seedParts struct {
	// fill, if set, brings the volume from its source instead of a pull from a node.
	fill func(ctx context.Context) (Pulled, error)
	// failed, if set, runs after a job that ended without its volume, with the volume's
	// lock held.
	failed func(ctx context.Context, err error)
	// abort, closed once (abortOnce), stops the fill.
	abort     chan struct{}
	abortOnce sync.Once
}
