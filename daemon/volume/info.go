package volume

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/daemon/localstore"
	"github.com/drayage/drayage/daemon/metrics"
	"github.com/drayage/drayage/progress"
)

// States of a volume: the cluster's (idle, mounted, migrating, removing) and these.
const (
	StateIdle    = cluster.StateIdle
	StateMounted = cluster.StateMounted
	// StateUnreadable means the volume exists here but its record can't be read.
	StateUnreadable = "unreadable"
	// StateUnknown means the cluster store can't be reached to tell.
	StateUnknown = "unknown"
)

// Info is a volume as users see it (docker volume inspect, drayage volume inspect).
type Info struct {
	Name string `json:"name"`
	// Node is the node that holds the volume's data (its owner).
	Node       string `json:"node"`
	State      string `json:"state"`
	Mountpoint string `json:"mountpoint,omitempty"`
	Mounts     int    `json:"mounts"`
	// Size is in bytes: measured here (Get, on the node that holds the volume), else as
	// last recorded in the cluster (at its creation, when it last moved or was copied,
	// when its last container here stopped); -1 where not known. An empty volume is 0.
	Size    int64             `json:"size"`
	Options map[string]string `json:"options,omitempty"`
	Created time.Time         `json:"created"`
	// Epoch is the volume's fencing token (see package cluster).
	Epoch uint64 `json:"epoch,omitempty"`
	// Claim describes who holds the volume now, if anyone.
	Claim *ClaimInfo `json:"claim,omitempty"`
	// Problem says what is wrong with a volume in a bad state, and what to do.
	Problem string `json:"problem,omitempty"`
	// Progress is how far the volume's move (or copy) to another node has come, while it
	// runs (Get only).
	Progress *progress.Transfer `json:"progress,omitempty"`
	// Copies is how many copies the volume keeps (the replicas option: its owner's and
	// Copies-1 replicas); Replicas are the replicas there are.
	Copies   int           `json:"copies"`
	Replicas []ReplicaInfo `json:"replicas,omitempty"`
}

// States of a replica.
const (
	// ReplicaReady: synced at the volume's current epoch, its node alive.
	ReplicaReady = "ready"
	// ReplicaFailing: its last sync failed (as the owner saw it); it keeps the one before.
	ReplicaFailing = "failing"
	// ReplicaStale: synced at an earlier epoch, or kept from before the volume last moved
	// and not synced since.
	ReplicaStale = "stale"
	// ReplicaDown: its node is down.
	ReplicaDown = "down"
)

// ReplicaInfo is one replica of a volume as users see it.
type ReplicaInfo struct {
	Node  string `json:"node"`
	State string `json:"state"`
	// Synced is when its last sync completed; Lag how far it may be behind the volume,
	// in seconds (0: it has every write of the volume's last container); LagBytes what
	// that last sync had to send: what the replica lacked then.
	Synced   time.Time `json:"synced"`
	Lag      float64   `json:"lag_seconds"`
	LagBytes int64     `json:"lag_bytes"`
	Epoch    uint64    `json:"epoch"`
	Root     string    `json:"root"`
	// Problem says why its last sync failed, on the owner.
	Problem string `json:"problem,omitempty"`
}

// ClaimInfo is who holds a volume now.
type ClaimInfo struct {
	Node  string    `json:"node"`
	Kind  string    `json:"kind"`
	Since time.Time `json:"since"`
}

// Get describes one volume, with its size measured if it is held here. It fails only for
// a volume that does not exist (the engine forgets a volume whose Get fails): a volume
// held here whose records can't be read, here or in the cluster store, is described with
// the problem instead. One not held here that the store can't tell of is an error. A volume on its way to a node has its Progress.
func (m *Manager) Get(ctx context.Context, name string) (Info, error) {
	return m.get(ctx, name, true)
}

// Lookup is Get without measuring the volume's size: cheap enough to poll.
func (m *Manager) Lookup(ctx context.Context, name string) (Info, error) {
	return m.get(ctx, name, false)
}

func (m *Manager) get(ctx context.Context, name string, measure bool) (Info, error) {
	unlock, err := m.begin(ctx, name)
	if err != nil {
		return Info{}, err
	}
	defer unlock()
	rec, localErr := m.disk.Load(name)
	e, err := m.entry(ctx, name, "read")
	switch {
	case errors.Is(err, ErrNotFound):
		return Info{}, err
	case err != nil && errors.Is(localErr, localstore.ErrNotExist):
		// The store can't say and this node holds no such volume: say that it can't be
		// told, never "no such volume" and never a volume, which the engine would take
		// for one that exists (docker volume create would then answer success and create
		// nothing).
		return Info{}, err
	case err != nil:
		// The store can't say; the volume held here is described, with the problem.
		m.log.Warn("cannot read volume from the cluster store", "volume", name, "err", err)
		info := Info{Name: name, Node: "", State: StateUnknown, Size: -1, Problem: err.Error()}
		if localErr == nil {
			info = m.localInfo(rec)
			info.Problem = err.Error()
		}
		return info, nil
	}
	if e.Claim == nil { // a mount on a node whose lease lapsed shows as what it is
		if mark, err := m.reg.Mark(ctx, name); err == nil {
			e.Mark = mark
		}
	}
	info := m.clusterInfo(e)
	if c := e.Claim; c != nil && c.Kind != cluster.ClaimMount {
		info.Progress = m.progress(ctx, c)
	}
	if reps, err := m.reg.Replicas(ctx, name); err == nil {
		info.Replicas = m.replicaInfos(e, reps)
	}
	if e.Volume.Owner == m.cfg.Node {
		switch {
		case errors.Is(localErr, localstore.ErrNotExist):
			info.Problem = fmt.Sprintf("the cluster record says node %q holds this volume, but its data is not in %s", m.cfg.Node, m.cfg.Root)
		case localErr != nil:
			m.log.Error("cannot read volume record", "volume", name, "err", localErr)
			info.State, info.Problem = StateUnreadable, localErr.Error()+"; check the state dir and the daemon log"
		default:
			if rec.MountCount() > 0 {
				info.Mountpoint = m.mountpoint(name)
			}
			if !measure {
				break
			}
			if info.Size, err = m.disk.Size(name); err != nil {
				m.log.Warn("cannot measure volume", "volume", name, "err", err)
				info.Size = -1
			}
		}
	}
	return info, nil
}

// List describes every volume in the cluster, sorted by name; sizes are not measured.
// If the cluster store can't be reached it lists the volumes held here.
func (m *Manager) List(ctx context.Context) ([]Info, error) {
	if err := m.waitReady(ctx); err != nil {
		return nil, err
	}
	entries, err := m.reg.List(ctx)
	if err != nil {
		m.log.Warn("cannot list volumes in the cluster store; listing the ones held here", "err", err)
		recs, lerr := m.disk.List()
		if lerr != nil {
			return nil, fmt.Errorf("node %q: %w", m.cfg.Node, lerr)
		}
		infos := make([]Info, 0, len(recs))
		for _, rec := range recs {
			info := m.localInfo(rec)
			info.Problem = m.storeErr("list volumes", err).Error()
			infos = append(infos, info)
		}
		return infos, nil
	}
	replicas, err := m.reg.AllReplicas(ctx)
	if err != nil {
		m.log.Warn("cannot list the replicas in the cluster store; the list shows none", "err", err)
	}
	infos := make([]Info, 0, len(entries))
	for _, e := range entries {
		if e.Volume.Removing {
			continue
		}
		info := m.clusterInfo(e)
		info.Replicas = m.replicaInfos(e, replicas[e.Volume.Name])
		if e.Volume.Owner == m.cfg.Node && info.Mounts > 0 {
			info.Mountpoint = m.mountpoint(e.Volume.Name)
		}
		infos = append(infos, info)
	}
	return infos, nil
}

// ListNames lists every volume's name and, for one mounted here, its mountpoint, sorted
// by name: all the engine's List uses (docker volume ls; it asks Get for the rest). It
// reads the names from the cluster store and the mounts from this node's records, so it
// stays fast with 100,000 volumes where List, which describes each, does not. If the
// store can't be reached it lists the volumes this node has a copy of, as List does.
func (m *Manager) ListNames(ctx context.Context) ([]Info, error) {
	if err := m.waitReady(ctx); err != nil {
		return nil, err
	}
	recs, err := m.disk.List()
	if err != nil {
		return nil, fmt.Errorf("node %q: %w", m.cfg.Node, err)
	}
	mounted := make(map[string]bool)
	for _, rec := range recs {
		if rec.MountCount() > 0 && !rec.Replica() {
			mounted[rec.Name] = true
		}
	}
	names, err := m.reg.Names(ctx)
	if err != nil {
		m.log.Warn("cannot list volumes in the cluster store; listing the ones held here", "err", err)
		names = make([]string, 0, len(recs))
		for _, rec := range recs {
			names = append(names, rec.Name)
		}
	}
	infos := make([]Info, 0, len(names))
	for _, name := range names {
		info := Info{Name: name}
		if mounted[name] {
			info.Mountpoint = m.mountpoint(name)
		}
		infos = append(infos, info)
	}
	return infos, nil
}

// LocalStates counts, for metrics, the volumes whose data is on this node by state
// (StateMounted, StateIdle; a replica kept of a volume that moved away is idle) and the
// pulls to this node that are running ("pulling"). It reads only this node's records: no
// cluster store, no sizes. It returns nil until Init has completed.
func (m *Manager) LocalStates(context.Context) map[string]int {
	select {
	case <-m.ready:
	default:
		return nil
	}
	recs, err := m.disk.List()
	if err != nil {
		return nil
	}
	counts := map[string]int{StateMounted: 0, StateIdle: 0, "pulling": 0}
	for _, rec := range recs {
		if rec.MountCount() > 0 {
			counts[StateMounted]++
		} else {
			counts[StateIdle]++
		}
	}
	counts["pulling"] = len(m.Receiving())
	return counts
}

func (m *Manager) clusterInfo(e cluster.Entry) Info {
	v := e.Volume
	info := Info{
		Name:    v.Name,
		Node:    v.Owner,
		State:   e.State(),
		Size:    v.Size,
		Options: v.Options,
		Created: v.Created,
		Epoch:   v.Epoch,
		Copies:  m.replicaCount(v.Options),
	}
	if c := e.Claim; c != nil {
		info.Claim = &ClaimInfo{Node: c.Node, Kind: c.Kind, Since: c.Since}
		if c.Kind == cluster.ClaimMount {
			info.Mounts = c.Mounts
		}
	} else if mk := e.Mark; mk != nil {
		info.Mounts = mk.Mounts
		info.Problem = fmt.Sprintf("mounted on node %q by %s, but that node stopped renewing its lease in the cluster store: it is down, paused or cut off from the store; start drayage there again",
			mk.Node, containers(mk.Mounts))
	}
	return info
}

// localInfo describes a volume from this node's disk alone.
func (m *Manager) localInfo(rec localstore.Record) Info {
	info := Info{
		Name:    rec.Name,
		Node:    m.cfg.Node,
		State:   StateIdle,
		Mounts:  rec.MountCount(),
		Size:    -1,
		Options: rec.Options,
		Created: rec.Created,
	}
	if info.Mounts > 0 {
		info.State = StateMounted
		info.Mountpoint = m.mountpoint(rec.Name)
	}
	return info
}

// replicaInfos describes the replicas of the volume e is about.
func (m *Manager) replicaInfos(e cluster.Entry, reps []cluster.Replica) []ReplicaInfo {
	if len(reps) == 0 {
		return nil
	}
	v := e.Volume
	mounted := e.Claim != nil && e.Claim.Kind == cluster.ClaimMount && e.Claim.Mounts > 0 || e.Mark != nil
	var last map[string]error
	if v.Owner == m.cfg.Node {
		last = m.lastSyncs(v.Name)
	}
	p := m.currentPuller()
	now := time.Now()
	out := make([]ReplicaInfo, 0, len(reps))
	for _, rp := range reps {
		ri := ReplicaInfo{Node: rp.Node, State: ReplicaReady, Synced: rp.Synced, Lag: rp.Lag(v, mounted, now).Seconds(),
			LagBytes: rp.Sent, Epoch: rp.Epoch, Root: rp.Root}
		switch {
		case rp.Epoch < v.Epoch || rp.Synced.IsZero():
			ri.State = ReplicaStale
		case p != nil && !peerAlive(p, rp.Node):
			ri.State = ReplicaDown
		case last[rp.Node] != nil:
			ri.State, ri.Problem = ReplicaFailing, last[rp.Node].Error()
		}
		out = append(out, ri)
	}
	return out
}

func peerAlive(p Puller, node string) bool {
	alive, _ := p.Peer(node)
	return alive
}

// ReplicaLags lists how far each replica of the volumes owned here may be behind, for
// metrics. A scrape reads the replica records (one range read) and the record of each
// replicated volume held here: never every volume of the cluster.
func (m *Manager) ReplicaLags(ctx context.Context) []metrics.ReplicaLag {
	select {
	case <-m.ready:
	default:
		return nil
	}
	replicas, err := m.reg.AllReplicas(ctx)
	if err != nil {
		return nil
	}
	var entries []cluster.Entry
	for _, name := range slices.Sorted(maps.Keys(replicas)) {
		if rec, err := m.disk.Load(name); err != nil || rec.Replica() || rec.Pending {
			continue // not held here
		}
		e, err := m.reg.Get(ctx, name)
		if err != nil {
			continue
		}
		if e.Claim == nil {
			if mark, err := m.reg.Mark(ctx, name); err == nil {
				e.Mark = mark
			}
		}
		entries = append(entries, e)
	}
	var out []metrics.ReplicaLag
	for _, e := range entries {
		if e.Volume.Owner != m.cfg.Node {
			continue
		}
		for _, ri := range m.replicaInfos(e, replicas[e.Volume.Name]) {
			out = append(out, metrics.ReplicaLag{Volume: e.Volume.Name, Replica: ri.Node, Lag: time.Duration(ri.Lag * float64(time.Second))})
		}
	}
	return out
}
