package volume

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/docker/go-units"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/daemon/localstore"
	"github.com/drayage/drayage/daemon/metrics"
)

// Failover. A Mount of a replicated volume whose owner is down (gossip says so, and its
// lease in the store lapsed) promotes the freshest replica on a live node at the next
// epoch (cluster.Registry.Promote: one transaction, so two nodes racing can't both win),
// if that replica's lag is within the volume's max-lag; otherwise the Mount fails with
// the lag and the command that accepts the loss. The promoted replica's node takes it
// over as the volume (adopt); a Mount elsewhere then pulls it from there like any move.
//
// The old owner is fenced by the epoch: its claims lapsed with its lease, the store
// refuses what it writes at its old epoch, a sender checks the claim of every data
// stream, and the replicas' nodes refuse its syncs. When it comes back it compares its
// copy with the root hash the promotion started from (diverged): a copy with writes the
// promoted replica lacked is kept as a new volume NAME-diverged-EPOCH-NODE, never merged
// and never dropped; an identical one becomes a replica like any old copy.

// defaultMaxLag is how far behind a replica may be for a Mount to promote it, unless
// DRAYAGE_MAX_LAG or the volume's max-lag option says otherwise.
const defaultMaxLag = 5 * time.Minute

// DivergedName is the name of the volume in which a former owner keeps what its copy of
// volume name, of epoch epoch, held beyond the replica promoted in its place.
func DivergedName(name string, epoch uint64, node string) string {
	return fmt.Sprintf("%s-diverged-%d-%s", name, epoch, node)
}

// DivergedFrom reports whether name is that of a diverged copy (DivergedName), and of
// which volume.
func DivergedFrom(name string) (string, bool) {
	m := divergedName.FindStringSubmatch(name)
	if m == nil {
		return "", false
	}
	return m[1], true
}

var divergedName = regexp.MustCompile(`^(.+)-diverged-[0-9]+-[A-Za-z0-9._-]+$`)

// maxLag is how far behind a replica of a volume with these options may be for a Mount
// to promote it; negative: never without --accept-loss.
func (m *Manager) maxLag(opts map[string]string) time.Duration {
	if d, err := time.ParseDuration(opts[optMaxLag]); err == nil {
		if d == 0 {
			return -1
		}
		return d
	}
	if m.cfg.MaxLag == 0 {
		return defaultMaxLag
	}
	return m.cfg.MaxLag
}

// ownerDown reports whether gossip says the node holding the volume of record e is down.
func (m *Manager) ownerDown(e cluster.Entry) bool {
	p := m.currentPuller()
	if p == nil || e.Volume.Owner == m.cfg.Node {
		return false
	}
	alive, _ := p.Peer(e.Volume.Owner)
	return !alive
}

// failover promotes a replica of the volume of record e, whose owner is down, and
// returns the record that follows: held by the replica's node (this one, if it held the
// freshest replica), or by whichever node won a race to promote. to, if set, names the
// replica's node; acceptLoss promotes it whatever its lag. The caller holds the
// volume's lock.
func (m *Manager) failover(ctx context.Context, e cluster.Entry, to string, acceptLoss bool) (cluster.Entry, error) {
	v := e.Volume
	name := v.Name
	if err := m.ownerLapsed(ctx, v); err != nil {
		return e, err
	}
	if err := m.ownerSilent(ctx, v); err != nil {
		return e, err
	}
	if e.Claim != nil {
		return e, held(name, e.Claim, "retry in a moment")
	}
	rps, err := m.reg.Replicas(ctx, name)
	if err != nil {
		return e, m.storeErr("read the replicas of volume "+name, err)
	}
	mark, err := m.reg.Mark(ctx, name)
	if err != nil {
		return e, m.storeErr("read the mount mark of volume "+name, err)
	}
	best, lag, ok := m.freshest(rps, v, mark != nil, to, time.Now())
	if !ok {
		which := "no live node holds a replica of it"
		if to != "" {
			which = fmt.Sprintf("node %q holds no replica of it that is current to its epoch %d, or is down", to, v.Epoch)
		}
		return e, tell(ErrOwnerDown, "volume %q is held by node %q, which is down, and %s; start drayage on node %q again, then retry",
			name, v.Owner, which, v.Owner)
	}
	if limit := m.maxLag(v.Options); !acceptLoss && (limit < 0 || lag > limit) {
		allowed := fmt.Sprintf("more than its max-lag of %s", limit)
		if limit < 0 {
			allowed = "and its max-lag is 0: never promoted without --accept-loss"
		}
		return e, tell(ErrReplicaBehind, "volume %q is held by node %q, which is down; its freshest replica, on node %q, may lack the last %s of writes (last known current at %s), %s. Start drayage on node %q again, or accept losing those writes: drayage volume promote %s --to %s --accept-loss",
			name, v.Owner, best.Node, units.HumanDuration(lag), time.Now().Add(-lag).UTC().Format(time.RFC3339), allowed, v.Owner, name, best.Node)
	}
	nv, err := m.reg.Promote(ctx, v, best, lag, acceptLoss)
	switch {
	case errors.Is(err, cluster.ErrStaleEpoch):
		m.log.Info("another node promoted a replica of the volume first", "volume", name, "owner", v.Owner)
		return m.entry(ctx, name, "mount")
	case errors.Is(err, cluster.ErrOwnerAlive):
		return e, m.ownerLapsed(ctx, v)
	case err != nil:
		return e, m.refused(ctx, name, "promote", "retry in a moment", err)
	}
	how := metrics.PromotedAuto
	if acceptLoss {
		how = metrics.PromotedAcceptLoss
	}
	m.cfg.Metrics.Promoted(how)
	m.log.Warn("promoted a replica: the volume's owner is down", "volume", name, "from", v.Owner, "to", best.Node, "epoch", nv.Epoch,
		"lag", lag.Round(time.Millisecond), "accept_loss", acceptLoss)
	if best.Node == m.cfg.Node {
		rec, err := m.disk.Load(name)
		if err == nil {
			_, err = m.adopt(rec, nv)
		}
		if err != nil {
			m.log.Warn("cannot take over the promoted replica yet; will retry", "volume", name, "node", m.cfg.Node, "err", err)
		}
	}
	return m.entry(ctx, name, "mount")
}

// ownerLapsed checks that the owner of v holds no lease in the store: one that does may
// be cut off from this node only, and still writing the volume.
func (m *Manager) ownerLapsed(ctx context.Context, v cluster.Volume) error {
	alive, err := m.reg.Alive(ctx, v.Owner)
	if err != nil {
		return m.storeErr("ask whether node "+v.Owner+" holds a lease", err)
	}
	if !alive {
		return nil
	}
	ttl := "its TTL"
	if l := m.currentLease(); l != nil {
		ttl = l.TTL().String()
	}
	return tell(ErrOwnerDown, "volume %q is held by node %q, which gossip says is down, but which still holds its lease in the cluster store: it may be cut off from node %q only, and still writing the volume. A replica is promoted only once that lease lapses (within %s, DRAYAGE_LEASE_TTL); retry then",
		v.Name, v.Owner, m.cfg.Node, ttl)
}

// ownerAnswerWait bounds the direct call a promotion makes to the owner first.
const ownerAnswerWait = 2 * time.Second

// ownerSilent checks that the owner of v does not answer a call from this node: gossip
// can call a busy node dead, and a node whose store stalled loses its lease while it
// runs on. A node that answers is not replaced.
func (m *Manager) ownerSilent(ctx context.Context, v cluster.Volume) error {
	p := m.currentPuller()
	if p == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, ownerAnswerWait)
	defer cancel()
	if !p.Answers(ctx, v.Owner) {
		return nil
	}
	return tell(ErrOwnerDown, "volume %q is held by node %q, which gossip says is down and whose lease lapsed, but which answers node %q: it is alive, and a replica is not promoted in its place. Retry in a moment; if it goes on, see node %q's log (its cluster store may be stalling)",
		v.Name, v.Owner, m.cfg.Node, v.Owner)
}

// divergedNameTaken reports whether a diverged copy can't take the name keep: too long
// for a volume name, or a volume of that name exists in the store.
func (m *Manager) divergedNameTaken(ctx context.Context, keep string) (bool, string) {
	if err := ValidateName(keep); err != nil {
		return true, "the name is too long for a volume"
	}
	_, err := m.reg.Get(ctx, keep)
	switch {
	case errors.Is(err, cluster.ErrVolumeNotFound):
		return false, ""
	case err != nil:
		return true, "the cluster store can't say whether the name is free (" + err.Error() + "); will retry"
	}
	return true, "a volume of that name exists"
}

// freshest picks the replica of v to promote: the one named to, or else the least behind
// of those current to v's epoch on live nodes, or this node's if it holds the same tree
// (the same root hash: nothing to pull). mounted says whether the old owner had
// containers mounting the volume when it died.
func (m *Manager) freshest(rps []cluster.Replica, v cluster.Volume, mounted bool, to string, now time.Time) (cluster.Replica, time.Duration, bool) {
	p := m.currentPuller()
	var best cluster.Replica
	var bestLag time.Duration
	found := false
	for _, rp := range rps {
		live := rp.Node == m.cfg.Node
		if !live && p != nil {
			live, _ = p.Peer(rp.Node)
		}
		if rp.Epoch != v.Epoch || rp.Root == "" || rp.Node == v.Owner || !live || to != "" && rp.Node != to {
			continue
		}
		lag := rp.Lag(v, mounted, now)
		if !found || lag < bestLag {
			best, bestLag, found = rp, lag, true
		}
	}
	for _, rp := range rps {
		if found && rp.Node == m.cfg.Node && best.Node != m.cfg.Node && rp.Epoch == v.Epoch && rp.Root == best.Root && to == "" {
			best, bestLag = rp, max(bestLag, rp.Lag(v, mounted, now))
		}
	}
	return best, bestLag, found
}

// adopt takes over this node's replica of a volume that record v says was promoted
// here: it is the volume now, at v's epoch. The caller holds the volume's lock.
func (m *Manager) adopt(rec localstore.Record, v cluster.Volume) (localstore.Record, error) {
	rec, err := m.disk.Adopt(rec.Name, v.Epoch)
	if err != nil {
		return rec, fmt.Errorf("node %q: %w", m.cfg.Node, err)
	}
	m.forget()
	m.log.Warn("took over a promoted replica: this node holds the volume now", "volume", rec.Name, "epoch", v.Epoch, "root", v.Root)
	if m.replicated(v.Options) {
		m.scheduleSync(rec.Name, time.Now(), false) // the replica count heals
	}
	return rec, nil
}

// diverged handles this node's copy rec of a volume that record v says is held elsewhere
// at a later epoch, if a failover moved it there: with containers here still mounting
// the copy, it is reported and kept as it is; once none does, a copy that differs from
// the replica promoted in its place is kept as a new volume (DivergedName). Mounts this
// run only restored from an earlier one (the node crashed, its engine with it: no
// Unmount will come for the containers that died) do not hold it back: a container that
// did survive writes on into the kept copy, whose tree it still has mounted. It reports
// whether it dealt with the copy; false leaves it to the rules of a move (an identical
// copy becomes a replica, or goes). The caller holds the volume's lock.
func (m *Manager) diverged(ctx context.Context, rec localstore.Record, v cluster.Volume) bool {
	name := rec.Name
	p, err := m.reg.PromotionAt(ctx, name, rec.Epoch)
	if err != nil {
		m.log.Warn("cannot read how the volume left this node; will retry", "volume", name, "node", m.cfg.Node, "err", err)
		return true
	}
	if p == nil || p.From != m.cfg.Node {
		return false // a move, confirmed by its target
	}
	keep := DivergedName(name, rec.Epoch, m.cfg.Node)
	if rec.MountCount() > 0 && !m.restoredMounts(name) {
		m.report(name, "", fmt.Sprintf("volume %q was promoted on node %q at epoch %d while node %q was cut off; containers here still write to node %q's old copy, which is no longer the volume: stop them. What they wrote is then kept as volume %q",
			name, p.To, p.Epoch+1, m.cfg.Node, m.cfg.Node, keep), "node", m.cfg.Node, "epoch", rec.Epoch, "owner", v.Owner)
		return true
	}
	if m.cfg.TreeRoot == nil {
		m.report(name, "", fmt.Sprintf("node %q can't hash its copy of volume %q, promoted on node %q: the copy is kept as it is, unused; compare it with the volume by hand", m.cfg.Node, name, p.To))
		return true // fail closed: the copy may hold writes
	}
	root, err := m.cfg.TreeRoot(ctx, m.disk.DataDir(name))
	if err != nil {
		m.log.Warn("cannot hash this node's copy of a volume promoted elsewhere; it is kept until it can", "volume", name, "node", m.cfg.Node, "err", err)
		return true
	}
	if root == p.Root {
		m.log.Info("this node's copy of a volume promoted elsewhere holds nothing the promoted replica lacked", "volume", name, "node", m.cfg.Node,
			"promoted_on", p.To, "epoch", p.Epoch+1)
		return false
	}
	if taken, why := m.divergedNameTaken(ctx, keep); taken {
		m.report(name, metrics.RecordContradicts, fmt.Sprintf("node %q's copy of volume %q holds writes the replica promoted on node %q lacked, and it can't be kept as volume %q: %s. The copy stays as it is, unused, in %s: copy out what you need, then remove it",
			m.cfg.Node, name, p.To, keep, why, m.disk.DataDir(name)))
		return true
	}
	if rec.MountCount() > 0 {
		// Restored from before a crash: the mountpoint goes, so that the next Mount of
		// the volume here binds the volume, not the kept copy.
		if err := m.unbind(name); err != nil {
			m.log.Warn("cannot remove the old mountpoint of a volume promoted elsewhere; its copy is kept as it is until it can", "volume", name, "node", m.cfg.Node, "err", err)
			return true
		}
		m.log.Warn("the mounts of a volume promoted elsewhere are from before this node restarted; keeping its copy as a diverged volume all the same",
			"volume", name, "node", m.cfg.Node, "mounts", rec.MountCount(), "diverged", keep)
	}
	nrec, err := m.disk.Rename(name, keep)
	if err != nil && !errors.Is(err, localstore.ErrExist) {
		m.log.Warn("cannot keep the writes a failover left behind as a new volume; the copy stays as it is, will retry", "volume", name,
			"node", m.cfg.Node, "diverged", keep, "err", err)
		return true
	}
	if err != nil {
		m.report(name, metrics.RecordContradicts, fmt.Sprintf("node %q's copy of volume %q holds writes the replica promoted on node %q lacked, and a volume %q exists already; both are kept: compare them, keep what you need, then remove what you don't",
			m.cfg.Node, name, p.To, keep))
		return true
	}
	m.forget() // a tree moved: events under it belong to the new name
	m.cfg.Metrics.DivergedKept()
	m.log.Error("kept writes that did not reach the promoted replica as a new, unmounted volume: compare it with the volume, keep what you need, then remove it",
		"volume", name, "diverged", keep, "node", m.cfg.Node, "promoted_on", p.To, "epoch", p.Epoch+1, "lag_seconds", p.Lag)
	m.register(ctx, nrec)
	return true
}
