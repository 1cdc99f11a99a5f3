package volume

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/docker/go-units"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/daemon/internal/failpoint"
	"github.com/drayage/drayage/daemon/localstore"
	"github.com/drayage/drayage/progress"
)

// How a volume comes to this node, top to bottom: a Mount (mount.go) or a Move (move.go)
// of a volume held elsewhere calls joinPull, which claims the volume for this node and
// starts a job; the job pulls it through the Puller (the daemon's transfer engine, see
// daemon/puller.go) into staging, then installs it and commits the move in the cluster;
// the caller waits for the job in await. A copy (copy.go) runs on the same jobs.
//
// A pull of a volume to this node (a move, or a copy into a new volume) runs as a job on
// the manager's lifetime, not on the request that started it: the engine gives a Mount a
// fixed budget, and a volume that takes longer to arrive must not start over on every
// retry. A caller waits for the job until its budget is nearly spent, then answers
// ErrPulling with the progress; the job goes on, and the next call (a Mount, a Move, the
// same Copy) waits on the same job. The job holds the lock of the volume it brings here
// only to install and commit, so Get and the other calls stay responsive; Close stops it.

const (
	// answerMargin is how long before its deadline a call stops waiting for a pull, so
	// that its answer reaches the engine in time.
	answerMargin = time.Second
	// staleFailure is how long the failure of a job nobody waited on is kept for the
	// next caller to hear; after that, the next caller just starts again.
	staleFailure = time.Minute
)

// pullOptions say how a volume is moved here.
type pullOptions struct {
	// limit is the largest volume to move (0: any size).
	limit int64
}

// Hints that end a "still being pulled" error, by who waited.
const (
	mountHint = "start the container again in a moment"
	moveHint  = "see how far it is with 'drayage volume inspect %s'"
)

// joinPull registers the caller as waiting for the move of a volume held by another
// node to this one: it joins the pull running here, or checks and claims the volume and
// starts one (see joinJob). The caller holds the volume's lock; it calls await after
// unlocking.
func (m *Manager) joinPull(ctx context.Context, e cluster.Entry, o pullOptions) (*pullJob, error) {
	name := e.Volume.Name
	if j, err := m.joinJob(name); j != nil || err != nil {
		return j, err
	}
	if err := m.stopping(); err != nil {
		return nil, err
	}
	if err := m.replaceable(ctx, e); err != nil {
		return nil, err
	}
	p, claim, err := m.claimMove(ctx, e, o)
	if err != nil {
		return nil, err
	}
	// A sync into this node's replica gives way to the move; the job waits for it to end.
	waitSync := m.stopSync(name)
	if waitSync == nil && !m.replicated(e.Volume.Options) { // a replicated volume's replica stays one: the pull primes from it
		if reused, err := m.disk.ReuseReplica(name); err != nil {
			m.log.Warn("cannot start the pull from this node's old copy; pulling it whole", "volume", name, "err", err)
		} else if reused {
			m.log.Info("pulling only what changed since this node's old copy", "volume", name, "from", e.Volume.Owner)
		}
	}
	track := newTracker(progress.Transfer{Volume: name, Kind: progress.KindMove, From: e.Volume.Owner, To: m.cfg.Node, Started: time.Now().UTC()}, m.publisher(claim))
	return m.startJob(ctx, &pullJob{key: name, src: e.Volume, claim: claim, pull: p, limit: o.limit, track: track, waitSync: waitSync,
		commit:   func(ctx context.Context, got Pulled) error { return m.commitMove(ctx, e, claim, got) },
		unwaited: func(ctx context.Context) { m.releaseIdle(ctx, name) },
	})
}

// claimMove checks that a volume held by another node can move here now and claims it
// for this node (the fencing epoch goes up by one when the move commits).
func (m *Manager) claimMove(ctx context.Context, e cluster.Entry, o pullOptions) (Puller, *cluster.Claim, error) {
	name, owner := e.Volume.Name, e.Volume.Owner
	mountedHint := fmt.Sprintf("stop it there or use 'drayage volume move %s --to %s'", name, m.cfg.Node)
	p, err := m.checkSource(e, mountedHint)
	if err != nil {
		return nil, nil, err
	}
	if limit := o.limit; limit > 0 && e.Volume.Size > limit {
		return nil, nil, tell(ErrTooLarge, "volume %q on node %q holds %s, above the %s that a container start moves (DRAYAGE_DYNAMIC_LIMIT); move it first with 'drayage volume move %s --to %s'",
			name, owner, units.BytesSize(float64(e.Volume.Size)), units.BytesSize(float64(limit)), name, m.cfg.Node)
	}
	claim, _, err := m.reg.BeginMigration(ctx, name, m.cfg.Node, m.currentLease())
	if err != nil {
		return nil, nil, m.refused(ctx, name, "move", mountedHint, err)
	}
	return p, claim, nil
}

// checkSource checks that a volume (held by another node, or copied here) can be sent
// here now: this node can pull, no claim holds the volume and its owner is up. It returns
// the puller to use; mountedHint ends the refusal of a mounted volume.
func (m *Manager) checkSource(e cluster.Entry, mountedHint string) (Puller, error) {
	name, owner := e.Volume.Name, e.Volume.Owner
	p := m.currentPuller()
	if p == nil {
		return nil, tell(ErrElsewhere, "volume %q is held by node %q, not %q; this node runs alone (no certificate in its TLS dir), so it can't pull volumes: run the container on node %q, or join this node to the cluster",
			name, owner, m.cfg.Node, owner)
	}
	if c := e.Claim; c != nil {
		return nil, held(name, c, mountedHint)
	}
	if alive, seen := p.Peer(owner); !alive {
		last := "never seen by this node"
		if !seen.IsZero() {
			last = "last seen " + units.HumanDuration(time.Since(seen)) + " ago"
		}
		return nil, tell(ErrOwnerDown, "volume %q is held by node %q, which is down (%s); start drayage there again, then retry",
			name, owner, last)
	}
	return p, nil
}

// replaceable checks that a pull of the volume that record e is about may replace what
// this node holds of it: nothing, an old copy kept as a replica, or a copy of a move not
// committed. A copy of its own that the record's owner has not confirmed superseding is
// never written over. The caller holds the volume's lock.
func (m *Manager) replaceable(ctx context.Context, e cluster.Entry) error {
	rec, err := m.disk.Load(e.Volume.Name)
	if errors.Is(err, localstore.ErrNotExist) || err == nil && (rec.Replica() || rec.Pending) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("node %q: %w", m.cfg.Node, err)
	}
	if p, perr := m.reg.PromotionAt(ctx, e.Volume.Name, rec.Epoch); perr == nil && p != nil && p.From == m.cfg.Node {
		return tell(ErrConflict, "volume %q was promoted on node %q at epoch %d while node %q was cut off: node %q's copy (epoch %d) is no longer the volume, and is not used. Once no container here uses it, what it holds beyond the promoted replica is kept as volume %q; start the container again then, and it pulls the volume from node %q",
			e.Volume.Name, p.To, p.Epoch+1, m.cfg.Node, m.cfg.Node, rec.Epoch, DivergedName(e.Volume.Name, rec.Epoch, m.cfg.Node), e.Volume.Owner)
	}
	return tell(ErrConflict, "node %q holds its own copy of volume %q (epoch %d), and the cluster record says node %q holds it at epoch %d; it replaces its copy only once node %q confirms it holds the volume: is it up? See node %q's log, retry in a moment",
		m.cfg.Node, e.Volume.Name, rec.Epoch, e.Volume.Owner, e.Volume.Epoch, e.Volume.Owner, m.cfg.Node)
}

// pullJob is one pull of a volume to this node.
type pullJob struct {
	// key is the volume the job brings here: the one moved, or a copy's new name. The job
	// is kept in its local state, and its staging tree is the key's.
	key string
	// src is the volume pulled, as its record was when the job began; claim the claim
	// the transfer runs under (its From is the sending node).
	src       cluster.Volume
	claim     *cluster.Claim
	pull      Puller
	seedParts       // a fill from the volume's source, not a pull (seed.go)
	limit     int64 // the largest volume the pull accepts (0: any)
	track     *tracker
	// waitSync, if set, is closed once the replica sync the job interrupted has ended.
	waitSync <-chan struct{}
	// commit installs what arrived and records it; it runs with the key's lock held.
	commit func(ctx context.Context, got Pulled) error
	// unwaited, if set, runs after a commit that nobody waited for any more, with the
	// key's lock held.
	unwaited func(ctx context.Context)
	done     chan struct{} // closed when the job has ended

	// Set before done is closed.
	err   error
	size  int64
	ended time.Time

	// waiters counts the calls waiting for the job; guarded by Manager.mu.
	waiters int
}

func (j *pullJob) from() string { return j.claim.From }

// running reports whether j has not ended yet.
func (j *pullJob) running() bool {
	select {
	case <-j.done:
		return false
	default:
		return true
	}
}

// joinJob registers the caller as waiting for the job that brings key here, if one
// runs. The failure of a job nobody waited on is returned to the first caller after it
// (then forgotten); with neither, it returns nil, nil and the caller may start a job.
// The caller holds key's lock, so that two calls never both start one.
func (m *Manager) joinJob(key string) (j *pullJob, err error) {
	m.with(key, func(v *local) {
		if v.job == nil {
			return
		}
		if v.job.running() {
			j = v.job
			j.waiters++
			return
		}
		if time.Since(v.job.ended) < staleFailure {
			err = v.job.err
		}
		v.job = nil
	})
	return j, err
}

// startJob runs j in the background, the caller waiting for it; if the manager is
// stopping it releases j's claim instead. The caller holds j.key's lock.
func (m *Manager) startJob(ctx context.Context, j *pullJob) (*pullJob, error) {
	j.done, j.waiters = make(chan struct{}), 1
	m.with(j.key, func(v *local) { v.job = j })
	if !m.goBackground(func(ctx context.Context) { m.runJob(ctx, j) }) {
		m.with(j.key, func(v *local) { v.job = nil })
		m.release(ctx, j.claim)
		return nil, m.stopping()
	}
	return j, nil
}

// runJob pulls, then commits under the lock of the volume the job brings here, and ends
// the job. A claim the transfer does not commit is released.
func (m *Manager) runJob(ctx context.Context, j *pullJob) {
	start := time.Now()
	m.log.Info("pulling volume", "volume", j.src.Name, "into", j.key, "from", j.from(), "epoch", j.claim.Epoch)
	got, err := m.receive(ctx, j)
	received := time.Now()

	unlock := m.locks.Lock(j.key)
	defer unlock()
	if err == nil {
		// What has arrived is committed even if the daemon is stopping meanwhile.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		err = j.commit(cctx, got)
		cancel()
	}
	if err != nil {
		if j.failed != nil {
			j.failed(ctx, err)
		}
		m.release(ctx, j.claim)
		m.log.Warn("pull failed", "volume", j.src.Name, "into", j.key, "from", j.from(), "err", err)
	} else {
		m.log.Info("pull done", "volume", j.src.Name, "into", j.key, "from", j.from(), "bytes", got.Size, "took", time.Since(start).Round(time.Millisecond),
			"transfer", received.Sub(start).Round(time.Millisecond), "commit", time.Since(received).Round(time.Millisecond))
	}

	var waited bool
	m.with(j.key, func(v *local) {
		j.err, j.size, j.ended = err, got.Size, time.Now()
		waited = j.waiters > 0
		if err == nil || waited {
			v.job = nil
		}
		close(j.done)
	})
	if err == nil && !waited && j.unwaited != nil {
		j.unwaited(ctx)
	}
}

// receive pulls what job j is about into the staging tree of its key. Progress goes to
// j's tracker as it arrives, and to the cluster store from the start to the end.
func (m *Manager) receive(ctx context.Context, j *pullJob) (Pulled, error) {
	claim := j.claim
	if j.waitSync != nil {
		select {
		case <-j.waitSync:
		case <-ctx.Done():
			return Pulled{}, fmt.Errorf("volume %q: drayage on node %q stopped before pulling it", claim.Volume, m.cfg.Node)
		}
	}
	defer m.useStaging(j.key)()
	if j.fill != nil {
		j.track.start()
		got, err := j.fill(ctx)
		m.unpublish(claim)
		return got, err
	}
	m.primeFromReplica(ctx, j.key)
	j.track.start()
	got, err := j.pull.Pull(ctx, PullRequest{Volume: claim.Volume, From: claim.From, Epoch: claim.Epoch, Staging: m.disk.StagingDir(j.key),
		MaxBytes: j.limit, AllowPrivileged: AllowsPrivileged(j.src.Options), Progress: j.track.update})
	m.unpublish(claim)
	if err == nil {
		return got, nil
	}
	if claim.Kind == cluster.ClaimCopy {
		return Pulled{}, fmt.Errorf("volume %q: copying it from node %q failed: %w; it is untouched there, and a retry resumes from what arrived",
			claim.Volume, claim.From, err)
	}
	if m.life.Err() != nil {
		return Pulled{}, fmt.Errorf("volume %q: drayage on node %q stopped while pulling it from node %q; it stays on node %q, and the next try resumes from what arrived",
			claim.Volume, m.cfg.Node, claim.From, claim.From)
	}
	return Pulled{}, fmt.Errorf("volume %q: pulling it from node %q failed: %w; it stays on node %q, and a retry resumes from what arrived",
		claim.Volume, claim.From, err, claim.From)
}

// commitMove installs a pulled volume and makes this node its owner, with an unmounted
// claim that a waiting Mount takes over. The copy is installed pending, at the claim's
// epoch, and is the volume only once the commit is seen: a crash in between leaves a
// copy that Reconcile confirms or takes back by what the record says (judge.go), and
// its sender keeps the volume until this node confirms it. The caller holds the
// volume's lock.
func (m *Manager) commitMove(ctx context.Context, e cluster.Entry, claim *cluster.Claim, got Pulled) error {
	name, owner := e.Volume.Name, e.Volume.Owner
	if err := m.replaceable(ctx, e); err != nil {
		return err
	}
	rec := localstore.Record{Name: name, Options: e.Volume.Options, Created: e.Volume.Created, Epoch: claim.Epoch, Pending: true, Root: got.Root}
	failpoint.Hit("install")
	if err := m.disk.Install(rec, m.disk.StagingDir(name)); err != nil {
		return fmt.Errorf("volume %q on node %q: %w", name, m.cfg.Node, err)
	}
	failpoint.Hit("commit")
	v, mc, err := m.reg.CommitMigration(ctx, claim, got.Size, got.Root, m.currentLease(), 0)
	if errors.Is(err, cluster.ErrClaimLost) {
		// Certainly not committed: the data goes back to staging, for the retry. (Any other
		// error may hide a commit that happened; then the copy stays pending, and
		// Reconcile settles it by what the record says.)
		if uerr := m.disk.Uninstall(name); uerr != nil {
			m.log.Error("cannot take back a volume whose move was not committed; Reconcile does", "volume", name, "owner", owner, "err", uerr)
		}
	}
	if err != nil {
		return fmt.Errorf("volume %q: the move from node %q could not be committed: %w; it stays on node %q, retry", name, owner, err, owner)
	}
	failpoint.Hit("committed")
	m.forget()
	m.committed(rec)
	m.setClaim(name, mc)
	if m.replicated(e.Volume.Options) {
		m.scheduleSync(name, time.Now(), false)
	}
	m.log.Info("volume moved here", "volume", name, "from", owner, "epoch", v.Epoch, "bytes", got.Size)
	return nil
}

// committed records that the pending copy rec is the volume now, its commit done. If
// that can't be written, Reconcile does it from the record.
func (m *Manager) committed(rec localstore.Record) {
	rec.Pending = false
	if err := m.disk.Save(rec); err != nil {
		m.log.Warn("cannot record that the volume's commit here is done; Reconcile does", "volume", rec.Name, "err", err)
	}
}

// release drops a claim this node took for a transfer that did not complete; ctx may
// have ended already.
func (m *Manager) release(ctx context.Context, claim *cluster.Claim) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := m.reg.Release(ctx, claim); err != nil {
		m.log.Warn("cannot release the transfer claim; it lapses with the lease", "volume", claim.Volume, "err", err)
	}
}

// releaseIdle drops this node's claim on a volume that no container here mounts (what a
// move leaves for a Mount that no longer waits). The caller holds the volume's lock.
func (m *Manager) releaseIdle(ctx context.Context, name string) {
	c := m.claim(name)
	if c == nil {
		return
	}
	if rec, err := m.disk.Load(name); err == nil && rec.MountCount() > 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := m.reg.Release(ctx, c); err != nil {
		m.log.Warn("cannot release the claim of a volume not mounted here; it lapses with the lease", "volume", name, "err", err)
		return
	}
	m.setClaim(name, nil)
}

// answerBy is ctx ending a margin before its deadline, so that a call that waits on it
// still answers the engine in time.
func answerBy(ctx context.Context) (context.Context, context.CancelFunc) {
	dl, ok := ctx.Deadline()
	if !ok {
		return context.WithCancel(ctx)
	}
	return context.WithDeadline(ctx, dl.Add(-min(answerMargin, time.Until(dl)/4)))
}

// await waits for j to end as long as ctx allows, less a margin to answer in time. If j
// has ended it returns j's error (and a failure heard is forgotten, so the next call
// starts again); if not, ErrPulling with the progress so far, ending in hint.
func (m *Manager) await(ctx context.Context, j *pullJob, hint string) error {
	wait, cancel := answerBy(ctx)
	defer cancel()
	select {
	case <-j.done:
	case <-wait.Done():
	}
	var ended bool
	m.with(j.key, func(v *local) {
		j.waiters--
		if ended = !j.running(); ended && j.err != nil && v.job == j {
			v.job = nil
		}
	})
	if ended {
		return j.err
	}
	if j.fill != nil {
		return tell(ErrPulling, "volume %q is still being filled from %s on node %q: %s; it continues in the background: %s",
			j.src.Name, j.from(), m.cfg.Node, j.track.get().Amount(), hint)
	}
	return tell(ErrPulling, "volume %q is still being pulled from node %q to node %q: %s; it continues in the background: %s",
		j.src.Name, j.from(), m.cfg.Node, j.track.get().Amount(), hint)
}

// primeFromReplica brings the staging tree of a pull of volume name up to date from
// this node's replica of it, if it holds one: the pull then sends only what changed
// since the replica's last sync. It never fails the pull: without it, more is sent.
func (m *Manager) primeFromReplica(ctx context.Context, name string) {
	rec, err := m.disk.Load(name)
	if err != nil || !rec.Replica() {
		return
	}
	files, bytes, err := m.disk.PrimeStaging(ctx, name, true)
	if err != nil {
		m.log.Warn("cannot start the pull from this node's replica; pulling what differs from its staging", "volume", name, "err", err)
		return
	}
	m.log.Info("pulling only what changed since this node's replica last synced", "volume", name, "primed_files", files, "primed_bytes", bytes)
}
