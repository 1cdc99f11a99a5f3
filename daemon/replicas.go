package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/drayage/drayage/cluster/gossip"
	"github.com/drayage/drayage/daemon/changes"
	"github.com/drayage/drayage/daemon/metrics"
	"github.com/drayage/drayage/daemon/peers"
	"github.com/drayage/drayage/daemon/transfer"
	"github.com/drayage/drayage/daemon/volume"
)

// Replicated volumes across the network: the owner asks each replica's node, over the
// control service, to sync its replica (the node then pulls from the owner through the
// transfer engine) or to drop it; gossip tells each node's free space, where new
// replicas go.

// syncRequest asks a node to sync its replica of a volume from the caller, its owner.
type syncRequest struct {
	Volume string `json:"volume"`
	Epoch  uint64 `json:"epoch"`
	volume.SyncHow
}

// dropRequest asks a node to drop its replica of a volume the caller owns.
type dropRequest struct {
	Volume string `json:"volume"`
	Epoch  uint64 `json:"epoch"`
}

// syncTimeout bounds one replica sync as the owner waits for it: a rebuild of a large
// volume takes long, and keepalives find a node that stopped answering sooner.
const syncTimeout = 6 * time.Hour

// SyncReplica asks node to bring its replica of a volume up to date from this node.
func (p netPuller) SyncReplica(ctx context.Context, node, name string, epoch uint64, how volume.SyncHow) (volume.ReplicaSynced, error) {
	var res volume.ReplicaSynced
	m, ok := p.n.gossip.Member(node)
	if !ok || m.Meta.Control == "" || m.State != gossip.StateAlive {
		return res, fmt.Errorf("node %q is not alive in node %q's gossip roster", node, p.n.id.Name())
	}
	ctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	if err := peers.Call(ctx, p.n.id, node, m.Meta.Control, controlServiceName+"/SyncReplica", &syncRequest{Volume: name, Epoch: epoch, SyncHow: how}, &res); err != nil {
		return res, fmt.Errorf("node %q: %w", node, err)
	}
	return res, nil
}

// DropReplica asks node to delete its replica of a volume this node holds.
func (p netPuller) DropReplica(ctx context.Context, node, name string, epoch uint64) error {
	return p.ask(ctx, node, "DropReplica", &dropRequest{Volume: name, Epoch: epoch}, &struct{}{})
}

// Peers lists the other nodes in gossip with the free space each announced.
func (p netPuller) Peers() []volume.Peer {
	var out []volume.Peer
	for _, m := range p.n.gossip.Members() {
		if m.Name == p.n.id.Name() {
			continue
		}
		out = append(out, volume.Peer{Name: m.Name, Alive: m.State == gossip.StateAlive, LastSeen: m.LastSeen, Free: m.Meta.Free})
	}
	return out
}

// syncReplicaHere and dropReplicaHere serve the control service's SyncReplica and
// DropReplica: the owner is the caller, as its certificate says.
func (d *Daemon) syncReplicaHere(ctx context.Context, r *syncRequest) (*volume.ReplicaSynced, error) {
	owner, err := peers.Caller(ctx)
	if err != nil {
		return nil, err
	}
	res, err := d.vols.SyncReplica(ctx, r.Volume, owner, r.Epoch, r.SyncHow)
	return &res, err
}

func (d *Daemon) dropReplicaHere(ctx context.Context, r *dropRequest) (*struct{}, error) {
	owner, err := peers.Caller(ctx)
	if err != nil {
		return nil, err
	}
	return &struct{}{}, d.vols.DropReplica(ctx, r.Volume, owner, r.Epoch)
}

// announceFreeSpace tells the other nodes, through gossip, how much space this node's
// state dir has free, now and then, until ctx ends: new replicas go to the nodes with
// the most. A change under 1% of the last figure is not worth a broadcast, and every
// broadcast reaches every node: so a node announces at most once per announceGap, which
// grows with the cluster, unless its free space changed by a tenth.
func (d *Daemon) announceFreeSpace(ctx context.Context, n *network) {
	var last int64 = -1
	var at time.Time
	for {
		var st unix.Statfs_t
		if err := unix.Statfs(d.cfg.Root, &st); err == nil {
			free := int64(st.Bavail) * st.Bsize
			diff := max(free-last, last-free)
			due := time.Since(at) >= announceGap(len(n.gossip.Members()))
			if last < 0 || diff > last/100 && due || diff > last/10 {
				if err := n.gossip.SetMeta(func(m *gossip.Meta) { m.Free = free }, 5*time.Second); err == nil {
					last, at = free, time.Now()
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Minute):
		}
	}
}

// announceGap is how long a node waits between free-space announcements in a cluster
// of n nodes: a minute, or 10 s a node, so that the cluster as a whole announces at
// most once every 10 s. An announcement costs each node about 3 KB of gossip
// (make scale measures it), so that is under 300 B/s a node at any size.
func announceGap(n int) time.Duration {
	return max(time.Minute, time.Duration(n)*10*time.Second)
}

// trackChanges starts telling the volume manager which volumes change (package changes),
// so that a mounted replicated volume that does not change costs no sync. Where the
// kernel does not allow it, each sync walks the volume instead, as it says once.
func (d *Daemon) trackChanges() *changes.Tracker {
	dir := filepath.Join(d.cfg.Root, "volumes")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		d.log.Warn("cannot track file changes; every replica sync walks the tree it sends", "err", err)
		return nil
	}
	t, err := changes.Start(dir, d.log)
	if err != nil {
		d.log.Warn("cannot track file changes; every replica sync walks the tree it sends", "err", err)
		return nil
	}
	d.log.Info("tracking file changes with fanotify", "dir", dir)
	d.vols.SetChanges(trackedVolumes{Tracker: t, metrics: d.metrics})
	return t
}

// trackedVolumes is the change tracker as the volume manager uses it, with the check of
// a tree for what the tracker can't see.
type trackedVolumes struct {
	*changes.Tracker
	metrics *metrics.Metrics
}

func (t trackedVolumes) Drifted(ctx context.Context, name, dir string) (bool, error) {
	return transfer.Drifted(ctx, dir, name, t.Tracker, t.metrics)
}
