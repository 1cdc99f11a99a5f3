package volume

import (
	"context"
	"fmt"
	"time"

	"github.com/docker/go-units"

	"github.com/drayage/drayage/cluster"
)

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

// pullJob is one pull of a volume to this node.
type pullJob struct {
	// key is the volume the job brings here: the one moved, or a copy's new name. The job
	// is kept in its local state, and its staging tree is the key's.
	key string
	// src is the volume pulled, as its record was when the job began; claim the claim
	// the transfer runs under (its From is the sending node).
	src   cluster.Volume
	claim *cluster.Claim
	pull  Puller
	limit int64 // the largest volume the pull accepts (0: any)
	track *tracker
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

	unlock := m.locks.Lock(j.key)
	defer unlock()
	if err == nil {
		// What has arrived is committed even if the daemon is stopping meanwhile.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		err = j.commit(cctx, got)
		cancel()
	}
	if err != nil {
		m.release(ctx, j.claim)
		m.log.Warn("pull failed", "volume", j.src.Name, "into", j.key, "from", j.from(), "err", err)
	} else {
		m.log.Info("pull done", "volume", j.src.Name, "into", j.key, "from", j.from(), "bytes", got.Size, "took", time.Since(start).Round(time.Millisecond))
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

// await waits for j to end as long as ctx allows, less a margin to answer in time. If j
// has ended it returns j's error (and a failure heard is forgotten, so the next call
// starts again); if not, ErrPulling with the progress so far, ending in hint.
func (m *Manager) await(ctx context.Context, j *pullJob, hint string) error {
	wait := ctx
	if dl, ok := ctx.Deadline(); ok {
		margin := min(answerMargin, time.Until(dl)/4)
		var cancel context.CancelFunc
		wait, cancel = context.WithDeadline(ctx, dl.Add(-margin))
		defer cancel()
	}
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
	return tell(ErrPulling, "volume %q is still being pulled from node %q to node %q: %s; it continues in the background: %s",
		j.src.Name, j.from(), m.cfg.Node, j.track.get().Amount(), hint)
}

// receive pulls what job j is about into the staging tree of its key. Progress goes to
// j's tracker as it arrives, and to the cluster store from the start to the end.
func (m *Manager) receive(ctx context.Context, j *pullJob) (Pulled, error) {
	claim := j.claim
	defer m.useStaging(j.key)()
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

// release drops a claim this node took for a transfer that did not complete; ctx may
// have ended already.
func (m *Manager) release(ctx context.Context, claim *cluster.Claim) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := m.reg.Release(ctx, claim); err != nil {
		m.log.Warn("cannot release the transfer claim; it lapses with the lease", "volume", claim.Volume, "err", err)
	}
}

// Puller is how the manager gets a volume from the node that holds it (the daemon's
// transfer engine over the cluster network).
type Puller interface {
	// Peer tells whether node is alive as far as gossip knows, and when it was last seen.
	Peer(node string) (alive bool, lastSeen time.Time)
	// Pull copies a volume from the node that holds it into staging, as r says.
	Pull(ctx context.Context, r PullRequest) (Pulled, error)
	// Holds asks node what it holds of volume: what a node asks before it drops its own
	// copy of a volume that moved there.
	Holds(ctx context.Context, node, volume string) (Holding, error)
	// RemovalAsked asks node whether the removal of volume at epoch was asked there: what
	// the owner asks before it deletes a volume marked for removal.
	RemovalAsked(ctx context.Context, node, volume string, epoch uint64) (bool, error)
}

// Pulled is what a pull brought.
type Pulled struct {
	// Size is the volume's size; Root its root hash (hex), verified with its sender.
	Size int64
	Root string
}

// PullRequest is one pull of a volume to this node.
type PullRequest struct {
	// Volume comes From the node that holds it, for the transfer claimed at Epoch.
	Volume, From string
	Epoch        uint64
	// Staging is where the tree is assembled; what an earlier attempt left is reused.
	Staging string
	// MaxBytes bounds the volume's size as received (0: any size): the dynamic limit,
	// for a Mount.
	MaxBytes int64
	// AllowPrivileged lets setuid files, file capabilities, trusted.* attributes and
	// devices arrive (the volume's allow-privileged option); otherwise they are stripped
	// or refused.
	AllowPrivileged bool
	// Progress, if set, hears the counts so far (Bytes, Total, Files, TotalFiles), from
	// one goroutine at a time.
	Progress func(Progress)
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
