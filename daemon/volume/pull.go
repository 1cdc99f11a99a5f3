package volume

import (
	"context"
	"fmt"
	"time"

	"github.com/docker/go-units"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/daemon/localstore"
)

// A pull of a volume to this node runs as a job on the manager's lifetime, not on the
// request that started it: the engine gives a Mount a fixed budget, and a volume that
// takes longer to arrive must not start over on every retry. A Mount waits for the job
// until its budget is nearly spent, then answers ErrPulling with the progress; the job
// goes on, and the next Mount (or a Move) waits on the same job. The job holds the
// volume's lock only to install and commit, so Get and the other calls stay responsive.

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
	name, from string
	limit      int64 // the largest volume the pull accepts (0: any)
	track      *tracker
	done       chan struct{} // closed when the job has ended

	// Set before done is closed.
	err   error
	size  int64
	ended time.Time

	// waiters counts the calls waiting for the job; guarded by Manager.mu.
	waiters int
}

// joinPull registers the caller as waiting for the pull of a volume held by another
// node: it joins the pull running here, or checks and claims the volume and starts one.
// The failure of a job nobody waited on is returned to the first caller after it. The
// caller holds the volume's lock (so two calls never both start a job); it calls await
// after unlocking.
func (m *Manager) joinPull(ctx context.Context, store *localstore.Store, e cluster.Entry, o pullOptions) (*pullJob, error) {
	name := e.Volume.Name
	m.mu.Lock()
	if j := m.jobs[name]; j != nil {
		select {
		case <-j.done: // failed with nobody waiting: tell this caller, then forget it
			delete(m.jobs, name)
			m.mu.Unlock()
			if time.Since(j.ended) < staleFailure {
				return nil, j.err
			}
			m.mu.Lock()
		default:
			j.waiters++
			m.mu.Unlock()
			return j, nil
		}
	}
	closed := m.closed
	m.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("node %q: drayage is stopping: %w; retry in a few seconds", m.cfg.Node, ErrNotReady)
	}

	if err := m.replaceable(store, e); err != nil {
		return nil, err
	}
	p, claim, err := m.claimMove(ctx, e, o)
	if err != nil {
		return nil, err
	}
	if reused, err := store.ReuseReplica(name); err != nil {
		m.log.Warn("cannot start the pull from this node's old copy; pulling it whole", "volume", name, "err", err)
	} else if reused {
		m.log.Info("pulling only what changed since this node's old copy", "volume", name, "from", e.Volume.Owner)
	}
	j := &pullJob{
		name: name, from: e.Volume.Owner, limit: o.limit, done: make(chan struct{}), waiters: 1,
		track: newTracker(Progress{Kind: KindMove, From: e.Volume.Owner, To: m.cfg.Node, Started: time.Now().UTC()}, m.publisher(claim)),
	}
	m.mu.Lock()
	if m.closed { // stopped meanwhile: nothing was pulled
		m.mu.Unlock()
		m.release(ctx, claim)
		return nil, fmt.Errorf("node %q: drayage is stopping: %w; retry in a few seconds", m.cfg.Node, ErrNotReady)
	}
	m.jobs[name] = j
	m.jobsWG.Add(1)
	m.mu.Unlock()
	go m.runPull(j, store, e, p, claim)
	return j, nil
}

// runPull pulls, then installs and commits under the volume's lock, and ends the job.
// A move nobody waits for any more leaves no claim behind.
func (m *Manager) runPull(j *pullJob, store *localstore.Store, e cluster.Entry, p Puller, claim *cluster.Claim) {
	defer m.jobsWG.Done()
	ctx := m.life
	start := time.Now()
	m.log.Info("pulling volume", "volume", j.name, "from", j.from, "epoch", claim.Epoch)
	got, err := m.receive(ctx, p, e.Volume, claim, store.StagingDir(j.name), j.limit, j.track)

	unlock := m.locks.Lock(j.name)
	defer unlock()
	if err == nil {
		// What has arrived is committed even if the daemon is stopping meanwhile.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		err = m.commitMove(cctx, store, e, claim, got)
		cancel()
	}
	if err != nil {
		m.release(ctx, claim)
		m.log.Warn("pull failed", "volume", j.name, "from", j.from, "err", err)
	} else {
		m.log.Info("pull done", "volume", j.name, "from", j.from, "bytes", got.Size, "took", time.Since(start).Round(time.Millisecond))
	}

	m.mu.Lock()
	j.err, j.size, j.ended = err, got.Size, time.Now()
	waited := j.waiters > 0
	if err == nil || waited {
		delete(m.jobs, j.name)
	}
	close(j.done)
	m.mu.Unlock()
	if err == nil && !waited {
		m.releaseIdle(ctx, store, j.name)
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
	m.mu.Lock()
	defer m.mu.Unlock()
	j.waiters--
	select {
	case <-j.done:
		if j.err != nil && m.jobs[j.name] == j {
			delete(m.jobs, j.name)
		}
		return j.err
	default:
	}
	return tell(ErrPulling, "volume %q is still being pulled from node %q to node %q: %s; it continues in the background: %s",
		j.name, j.from, m.cfg.Node, j.track.get().Amount(), hint)
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
