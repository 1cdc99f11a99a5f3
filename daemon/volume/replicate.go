package volume

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/daemon/localstore"
)

// A volume created with replicas=N is kept on N nodes: its owner's copy, and N-1 warm
// replicas that the owner keeps current. This file is the owner's side: when to sync,
// to which nodes, and what it sends them; replica.go is the replica's side.
//
// The owner syncs a volume's replicas while containers here mount it (every
// sync-interval), when its last container unmounts it (the Unmount waits for that
// sync), when it becomes the owner, and once after the daemon starts. A volume that is
// not mounted and whose replicas synced since its last container left costs nothing.
// Each sync asks every replica's node, at once, to pull the volume from here at the
// owner's epoch: the node pulls like a move does (only what differs, verified, staged,
// swapped in atomically) and records the sync in the store. This node sends to a node
// it asked, at the epoch it asked for, even while the volume is mounted (SendDir,
// ticket); a file written while it is sent makes that attempt void (transfer.ErrChanged).

const (
	// defaultSyncInterval is how soon a change to a mounted volume reaches its replicas
	// unless DRAYAGE_SYNC_INTERVAL or the volume's sync-interval option says otherwise.
	defaultSyncInterval = 30 * time.Second
	// defaultReplicaReplaceAfter is how long a replica's node may be down before another
	// takes its place.
	defaultReplicaReplaceAfter = 10 * time.Minute
	// syncRetry is how soon a sync that failed is tried again (at most the interval).
	syncRetry = 5 * time.Second
	// syncsAtOnce bounds the volumes whose replicas this node syncs at once.
	syncsAtOnce = 4
	// unmountSyncWait bounds how long an Unmount waits for its sync before it answers;
	// the sync goes on.
	unmountSyncWait = 20 * time.Second
	// checkEvery is how many sync intervals a mounted volume the change tracker saw no
	// change of goes before the owner walks it all the same (Changes.Drifted): a write
	// through a shared memory map makes no event.
	checkEvery = 10
	// verifyEvery is how many sync intervals go between the syncs that have the
	// replicas' nodes read their trees whole (SyncHow.Verify).
	verifyEvery = 120
)

// Changes tells which volumes changed (package changes).
type Changes interface {
	// Take reports whether a volume may have changed since the last Take of it.
	Take(name string) bool
	// Mark counts a volume as changed: what a failed sync did not deliver.
	Mark(name string)
	// Pending reports what the next Take of a volume would, without taking it.
	Pending(name string) bool
	// Forget drops what is known of directories: a tree was swapped in.
	Forget()
	// Drifted reads the whole tree of volume name at dir and reports whether it differs
	// from what the last sync read plus the changes logged since: what a write through a
	// shared memory map did, which makes no event. A sync that follows reads the
	// difference without walking again.
	Drifted(ctx context.Context, name, dir string) (bool, error)
}

// SetChanges has the manager sync a mounted replicated volume only when it changed. Call
// it before Init. Without it, every mounted volume is walked and synced at every sync
// interval.
func (m *Manager) SetChanges(c Changes) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.changes = c
}

func (m *Manager) currentChanges() Changes {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.changes
}

// forget tells the change tracker that a tree was swapped in here.
func (m *Manager) forget() {
	if c := m.currentChanges(); c != nil {
		c.Forget()
	}
}

// replication is this node's schedule of replica syncs, for the volumes it owns.
type replication struct {
	mu      sync.Mutex
	due     map[string]time.Time // when each volume's next sync is due
	forced  map[string]bool      // due syncs that run whether or not the volume changed
	checked map[string]time.Time // when each volume was last read whole here
	// verified is when each volume's last sync had its replicas' nodes walk their trees
	// (SyncHow.Verify).
	verified map[string]time.Time
	// root is each volume's root hash as its last sync, which every replica completed,
	// read it; none while a sync runs, after one failed, or once a check found a change.
	root    map[string]string
	running map[string]bool             // syncs running now
	waiters map[string][]chan error     // callers waiting for a volume's next sync
	tickets map[syncTicket]struct{}     // syncs this node serves now
	kick    chan struct{}               // the schedule changed
	last    map[string]map[string]error // each volume's last sync outcome, by replica node
	// checkEvery and verifyEvery are the constants of those names (tests shorten them).
	checkEvery, verifyEvery int
}

// syncTicket allows node to receive volume from this node at epoch, for a sync.
type syncTicket struct {
	volume, node string
	epoch        uint64
}

func newReplication() *replication {
	return &replication{due: map[string]time.Time{}, forced: map[string]bool{}, checked: map[string]time.Time{}, verified: map[string]time.Time{}, root: map[string]string{}, checkEvery: checkEvery, verifyEvery: verifyEvery, running: map[string]bool{}, waiters: map[string][]chan error{},
		tickets: map[syncTicket]struct{}{}, kick: make(chan struct{}, 1), last: map[string]map[string]error{}}
}

// replicaCount is how many copies a volume with these options keeps.
func (m *Manager) replicaCount(opts map[string]string) int {
	if n, err := strconv.Atoi(opts[optReplicas]); err == nil && n >= 1 {
		return n
	}
	return max(m.cfg.Replicas, 1)
}

// syncInterval is how soon a change to a mounted volume with these options reaches its
// replicas.
func (m *Manager) syncInterval(opts map[string]string) time.Duration {
	if d, err := time.ParseDuration(opts[optSyncInterval]); err == nil && d >= MinSyncInterval {
		return d
	}
	if m.cfg.SyncInterval > 0 {
		return m.cfg.SyncInterval
	}
	return defaultSyncInterval
}

func (m *Manager) replicaReplaceAfter() time.Duration {
	if m.cfg.ReplicaReplaceAfter > 0 {
		return m.cfg.ReplicaReplaceAfter
	}
	return defaultReplicaReplaceAfter
}

// scheduleSync has a volume's replicas synced at or before at (a sync due sooner stays
// so). It returns a channel that receives the outcome of that sync if wait is set. A
// sync waited for always runs; the others, of a mounted volume, only if it changed
// (recheck).
func (m *Manager) scheduleSync(name string, at time.Time, wait bool) <-chan error {
	return m.schedule(name, at, wait, true)
}

// recheck has a mounted volume's replicas synced at at, if it changed by then.
func (m *Manager) recheck(name string, at time.Time) { m.schedule(name, at, false, false) }

func (m *Manager) schedule(name string, at time.Time, wait, force bool) <-chan error {
	r := m.repl
	r.mu.Lock()
	if due, ok := r.due[name]; !ok || at.Before(due) {
		r.due[name] = at
	}
	if force {
		r.forced[name] = true
	}
	var ch chan error
	if wait {
		ch = make(chan error, 1)
		r.waiters[name] = append(r.waiters[name], ch)
	}
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
	return ch
}

// replicated reports whether a volume with these options keeps replicas.
func (m *Manager) replicated(opts map[string]string) bool { return m.replicaCount(opts) > 1 }

// replicate runs the schedule until ctx ends: each sync due starts, up to syncsAtOnce at
// once.
func (m *Manager) replicate(ctx context.Context) {
	r := m.repl
	slots := make(chan struct{}, syncsAtOnce)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		r.mu.Lock()
		now, next := time.Now(), time.Now().Add(time.Hour)
		var start []string
		for name, at := range r.due {
			switch {
			case r.running[name]:
			case !at.After(now):
				start = append(start, name)
			case at.Before(next):
				next = at
			}
		}
		r.mu.Unlock()
		for _, name := range start {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			r.mu.Lock()
			delete(r.due, name)
			forced := r.forced[name]
			delete(r.forced, name)
			r.running[name] = true
			m.cfg.Metrics.ReplicaSyncsRunning(len(r.running))
			waiters := r.waiters[name]
			delete(r.waiters, name)
			r.mu.Unlock()
			if !m.goBackground(func(ctx context.Context) {
				defer func() { <-slots }()
				m.runSync(ctx, name, forced, waiters)
			}) {
				return
			}
		}
		timer.Reset(time.Until(next))
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
		case <-timer.C:
		}
	}
}

// runSync syncs a volume's replicas, tells the callers waiting for it, and schedules
// the next sync: one interval on while containers here mount the volume, soon after a
// failure, none once it is idle and its replicas are current.
func (m *Manager) runSync(ctx context.Context, name string, forced bool, waiters []chan error) {
	next, err := m.syncReplicas(ctx, name, forced)
	r := m.repl
	r.mu.Lock()
	delete(r.running, name)
	m.cfg.Metrics.ReplicaSyncsRunning(len(r.running))
	r.mu.Unlock()
	select { // a sync asked for while this one ran starts now
	case r.kick <- struct{}{}:
	default:
	}
	for _, w := range waiters {
		w <- err
	}
	switch {
	case err != nil && !next.IsZero():
		m.scheduleSync(name, next, false)
	case !next.IsZero():
		m.recheck(name, next)
	}
}

// syncReplicas brings the replicas of a volume owned here up to date, and returns when
// the next sync is due (zero: none, until something asks for one).
func (m *Manager) syncReplicas(ctx context.Context, name string, forced bool) (next time.Time, err error) {
	plan, err := m.planSync(ctx, name, forced)
	if err != nil || plan == nil {
		if err != nil {
			m.log.Warn("cannot sync the volume's replicas; will retry", "volume", name, "err", err)
			return time.Now().Add(syncRetry), err
		}
		return time.Time{}, nil
	}
	if plan.unchanged {
		return time.Now().Add(plan.interval), nil
	}
	defer m.endTickets(plan.tickets)
	if plan.check && m.confirmUnchanged(ctx, name, plan) {
		return time.Now().Add(plan.interval), nil
	}
	m.repl.mu.Lock()
	delete(m.repl.root, name)
	m.repl.mu.Unlock()
	p := m.currentPuller()
	start := time.Now()
	errs := make([]error, len(plan.targets))
	results := make([]ReplicaSynced, len(plan.targets))
	var wg sync.WaitGroup
	for i, node := range plan.targets {
		wg.Go(func() {
			results[i], errs[i] = p.SyncReplica(ctx, node, name, plan.epoch, SyncHow{Clean: !plan.mounted, Walk: plan.walk, Verify: plan.verify})
		})
	}
	wg.Wait()
	outcome := map[string]error{}
	var failed []error
	for i, node := range plan.targets {
		outcome[node] = errs[i]
		m.cfg.Metrics.ReplicaSynced(errs[i] == nil, results[i].Sent)
		if errs[i] != nil {
			failed = append(failed, fmt.Errorf("node %q: %w", node, errs[i]))
			m.log.Warn("replica sync failed; will retry", "volume", name, "replica", node, "epoch", plan.epoch, "err", errs[i])
			continue
		}
		m.log.Info("replica synced", "volume", name, "replica", node, "epoch", plan.epoch, "sent", results[i].Sent,
			"bytes", results[i].Bytes, "took", time.Since(start).Round(time.Millisecond))
	}
	m.repl.mu.Lock()
	m.repl.last[name] = outcome
	if len(failed) == 0 && allSame(results) {
		m.repl.root[name] = results[0].Root
	}
	m.repl.mu.Unlock()
	if len(failed) > 0 {
		if c := m.currentChanges(); c != nil {
			c.Mark(name) // what changed is still to be sent
		}
		return time.Now().Add(min(syncRetry, plan.interval)), fmt.Errorf("volume %q: %w", name, errors.Join(failed...))
	}
	m.dropExtraReplicas(ctx, name, plan)
	if plan.mounted {
		return start.Add(plan.interval), nil
	}
	return time.Time{}, nil
}

// syncPlan is one sync of a volume's replicas, decided under the volume's lock.
type syncPlan struct {
	epoch    uint64
	mounted  bool
	interval time.Duration
	targets  []string          // the nodes that keep the replicas
	extra    []cluster.Replica // replicas beyond the count, dropped once the targets synced
	tickets  []syncTicket
	// unchanged: the volume is mounted and did not change since its last sync; nothing
	// to do until the next interval.
	unchanged bool
	// check: the change log saw no change of the mounted volume since its last sync, as
	// of at; the sync runs only if a walk of it here finds one (confirmUnchanged).
	check bool
	at    time.Time
	// walk: the owner reads its volume whole (SyncHow.Walk); verify: the replicas'
	// nodes theirs (SyncHow.Verify).
	walk, verify bool
}

// allSame reports whether every replica synced to the same root.
func allSame(results []ReplicaSynced) bool {
	for _, r := range results {
		if r.Root != results[0].Root {
			return false
		}
	}
	return len(results) > 0
}

// planSync decides which nodes a volume's replicas sync to now, and lets them receive
// it; nil if there is nothing to sync (the volume is not this node's, or keeps no
// replicas). A sync that is not forced, of a mounted volume the change tracker saw no
// change of, is planned as unchanged.
func (m *Manager) planSync(ctx context.Context, name string, forced bool) (*syncPlan, error) {
	unlock, err := m.begin(ctx, name)
	if err != nil {
		return nil, err
	}
	defer unlock()
	e, err := m.entry(ctx, name, "sync")
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	v := e.Volume
	if v.Owner != m.cfg.Node || v.Removing || !m.replicated(v.Options) || m.currentPuller() == nil {
		return nil, nil
	}
	rec, err := m.disk.Load(name)
	if err != nil {
		return nil, fmt.Errorf("node %q: %w", m.cfg.Node, err)
	}
	if rec, err = m.current(rec, e); err != nil {
		return nil, err
	}
	have, err := m.reg.Replicas(ctx, name)
	if err != nil {
		return nil, m.storeErr("read the replicas of volume "+name, err)
	}
	plan := &syncPlan{epoch: v.Epoch, mounted: rec.MountCount() > 0, interval: m.syncInterval(v.Options)}
	// A sync of a mounted volume reads only what the change log says changed. A write
	// through a shared memory map leaves no event: every checkEvery intervals the volume
	// is walked here all the same, and synced only if that finds a change (or else its
	// replicas are confirmed current, in the store); it is walked as its last container
	// leaves. The replicas' nodes re-read their trees every verifyEvery intervals.
	m.repl.mu.Lock()
	checked, verified := m.repl.checked[name], m.repl.verified[name]
	m.repl.mu.Unlock()
	c := m.currentChanges()
	plan.verify = time.Since(verified) >= time.Duration(m.repl.verifyEvery)*plan.interval
	plan.walk = c == nil || !plan.mounted
	if c != nil {
		// Taken before the sync reads the tree: a change made during the sync counts for
		// the next.
		plan.at = time.Now()
		due := time.Since(checked) >= time.Duration(m.repl.checkEvery)*plan.interval
		switch changed := c.Take(name); {
		case changed || forced || plan.walk || plan.verify:
			plan.walk = plan.walk || due // the sender walks: a volume that changes at every interval is checked too
		case due:
			plan.check = true
		default:
			plan.unchanged = true
			return plan, nil
		}
	}
	m.log.Debug("replica sync planned", "volume", name, "forced", forced, "mounted", plan.mounted, "walk", plan.walk, "check", plan.check,
		"verify", plan.verify, "last_check", checked, "last_verify", verified)
	m.repl.mu.Lock()
	if plan.walk || plan.check {
		m.repl.checked[name] = time.Now()
	}
	if plan.verify {
		m.repl.verified[name] = time.Now()
	}
	m.repl.mu.Unlock()
	plan.targets = m.placeReplicas(v, have, m.replicaCount(v.Options)-1)
	if len(plan.targets) == 0 {
		return nil, fmt.Errorf("volume %q keeps %d replicas, but no other node is alive to hold one; start drayage on more nodes", name, m.replicaCount(v.Options)-1)
	}
	for _, rp := range have {
		if !slices.Contains(plan.targets, rp.Node) && rp.Node != m.cfg.Node {
			plan.extra = append(plan.extra, rp)
		}
	}
	m.repl.mu.Lock()
	for _, node := range plan.targets {
		t := syncTicket{volume: name, node: node, epoch: v.Epoch}
		m.repl.tickets[t] = struct{}{}
		plan.tickets = append(plan.tickets, t)
	}
	m.repl.mu.Unlock()
	return plan, nil
}

func (m *Manager) endTickets(tickets []syncTicket) {
	m.repl.mu.Lock()
	defer m.repl.mu.Unlock()
	for _, t := range tickets {
		delete(m.repl.tickets, t)
	}
}

// ticketed reports whether this node asked node to sync volume at epoch.
func (m *Manager) ticketed(volume, node string, epoch uint64) bool {
	m.repl.mu.Lock()
	defer m.repl.mu.Unlock()
	_, ok := m.repl.tickets[syncTicket{volume, node, epoch}]
	return ok
}

// placeReplicas picks the n nodes that keep a volume's replicas: those its
// replica-nodes option names, or else the nodes that hold one already (the freshest
// first; a node down for less than DRAYAGE_REPLICA_REPLACE_AFTER keeps its place), then
// the live nodes with the most free space. Never this node, never a node twice.
func (m *Manager) placeReplicas(v cluster.Volume, have []cluster.Replica, n int) []string {
	if pinned := v.Options[optReplicaNodes]; pinned != "" {
		var out []string
		for node := range strings.SplitSeq(pinned, ",") {
			if node != m.cfg.Node && len(out) < n {
				out = append(out, node)
			}
		}
		return out
	}
	peers := map[string]Peer{}
	for _, p := range m.currentPuller().Peers() {
		peers[p.Name] = p
	}
	var out []string
	holding := slices.Clone(have)
	slices.SortFunc(holding, func(a, b cluster.Replica) int {
		return cmp.Or(cmp.Compare(b.Epoch, a.Epoch), b.Synced.Compare(a.Synced), strings.Compare(a.Node, b.Node))
	})
	for _, rp := range holding {
		p, known := peers[rp.Node]
		if len(out) < n && known && rp.Node != m.cfg.Node && (p.Alive || time.Since(p.LastSeen) < m.replicaReplaceAfter()) {
			out = append(out, rp.Node)
		}
	}
	fresh := make([]Peer, 0, len(peers))
	for _, p := range peers {
		if p.Alive && p.Name != m.cfg.Node && !slices.Contains(out, p.Name) {
			fresh = append(fresh, p)
		}
	}
	slices.SortFunc(fresh, func(a, b Peer) int { return cmp.Or(cmp.Compare(b.Free, a.Free), strings.Compare(a.Name, b.Name)) })
	for _, p := range fresh {
		if len(out) < n {
			out = append(out, p.Name)
		}
	}
	return out
}

// dropExtraReplicas asks the nodes holding replicas beyond the volume's count to drop
// them, now that the count is kept elsewhere (a move to a node that held none leaves the
// old owner's copy as one more).
func (m *Manager) dropExtraReplicas(ctx context.Context, name string, plan *syncPlan) {
	p := m.currentPuller()
	for _, rp := range plan.extra {
		if alive, _ := p.Peer(rp.Node); !alive {
			continue // asked again after its next sync
		}
		if err := p.DropReplica(ctx, rp.Node, name, plan.epoch); err != nil {
			m.log.Warn("cannot have a replica beyond the volume's count dropped; will retry", "volume", name, "replica", rp.Node, "err", err)
			continue
		}
		m.log.Info("dropped a replica beyond the volume's count", "volume", name, "replica", rp.Node)
	}
}

// lastSyncs is each replica node's last sync outcome for a volume owned here.
func (m *Manager) lastSyncs(name string) map[string]error {
	m.repl.mu.Lock()
	defer m.repl.mu.Unlock()
	return m.repl.last[name]
}

// replicaSendDir authorizes a sync of a volume owned here to node at epoch, which this
// node asked for: the record must still name this node the owner at epoch, and no move
// claim hold it. It may be mounted. The caller holds the volume's lock.
func (m *Manager) replicaSendDir(ctx context.Context, name, node string, epoch uint64) (string, error) {
	e, err := m.entry(ctx, name, "send")
	if err != nil {
		return "", err
	}
	if e.Volume.Owner != m.cfg.Node || e.Volume.Epoch != epoch {
		return "", fmt.Errorf("volume %q is held by node %q at epoch %d, not by node %q at epoch %d: %w",
			name, e.Volume.Owner, e.Volume.Epoch, m.cfg.Node, epoch, cluster.ErrStaleEpoch)
	}
	rec, err := m.disk.Load(name)
	if err != nil {
		return "", fmt.Errorf("volume %q on node %q: %w", name, m.cfg.Node, err)
	}
	if _, err := m.current(rec, e); err != nil {
		return "", err
	}
	if err := m.filled(rec); err != nil {
		return "", err
	}
	return m.disk.DataDir(name), nil
}

// scheduleOwned schedules one sync of every replicated volume held here, at start: what
// changed while the daemon was down is found by that sync's walk.
func (m *Manager) scheduleOwned(recs []localstore.Record) {
	for _, rec := range recs {
		if !rec.Pending && !rec.Replica() && !rec.Filling && m.replicated(rec.Options) {
			m.scheduleSync(rec.Name, time.Now(), false)
		}
	}
}

// confirmUnchanged walks a mounted volume the change log saw no change of since its last
// sync (Changes.Drifted) and, if the walk finds none either, records in the store that
// its replicas were current as of plan.at (cluster.Registry.ConfirmReplicas). It reports
// whether every replica was, and there is nothing to sync.
func (m *Manager) confirmUnchanged(ctx context.Context, name string, plan *syncPlan) bool {
	m.repl.mu.Lock()
	root := m.repl.root[name]
	m.repl.mu.Unlock()
	drifted, err := m.currentChanges().Drifted(ctx, name, m.disk.DataDir(name))
	if err != nil {
		m.log.Warn("cannot check the volume for changes its change log can't see; syncing its replicas instead",
			"volume", name, "node", m.cfg.Node, "err", err)
		return false
	}
	if drifted || root == "" {
		m.log.Debug("replica sync after a check", "volume", name, "drifted", drifted, "replicas_current", root != "")
		return false
	}
	nodes, err := m.reg.ConfirmReplicas(ctx, name, m.cfg.Node, plan.epoch, root, plan.at)
	if err != nil {
		m.log.Warn("cannot record that the volume's replicas are current; syncing them instead", "volume", name, "node", m.cfg.Node,
			"err", m.storeErr("confirm the replicas of volume "+name, err))
		return false
	}
	for _, node := range plan.targets {
		if !slices.Contains(nodes, node) {
			return false
		}
	}
	return true
}
