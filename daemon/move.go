package daemon

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/drayage/drayage/daemon/backup"
	"github.com/drayage/drayage/daemon/peers"
	"github.com/drayage/drayage/daemon/volume"
)

// moveRequest asks a node to bring a volume to itself.
type moveRequest struct {
	Volume string `json:"volume"`
}

// holdsRequest asks a node what it holds of a volume.
type holdsRequest struct {
	Volume string `json:"volume"`
}

// removalRequest asks a node whether it asked for the removal of a volume at an epoch.
type removalRequest struct {
	Volume string `json:"volume"`
	Epoch  uint64 `json:"epoch"`
}

// removalReply answers a removalRequest.
type removalReply struct {
	Asked bool `json:"asked"`
}

// pingRequest asks a node to answer; pingReply is its answer.
type (
	pingRequest struct{}
	pingReply   struct {
		Node string `json:"node"`
	}
)

// copyRequest asks a node to copy a volume into a new volume of its own.
type copyRequest struct {
	Volume string `json:"volume"`
	Copy   string `json:"copy"`
}

// controlService is the node-to-node control service (besides the transfer engine's):
// MoveHere asks the node to pull a volume to itself, CopyHere to copy one into a new
// volume it holds, Holds what it holds of a volume (before the asker drops its copy),
// RemovalAsked whether it asked for a volume's removal (before the owner deletes it),
// Ping only that it answers (before a failover replaces it), BackupHere to back up a
// volume it holds and BackupProgress how far that has come (backups.go),
// SyncReplica and DropReplica what the owner of a replicated volume asks of the nodes
// keeping its replicas (replicas.go).
// Messages are JSON (peers.Codec).
func (d *Daemon) controlService() *grpc.ServiceDesc {
	return peers.Service(controlServiceName,
		peers.Unary("MoveHere", func(ctx context.Context, r *moveRequest) (*volume.MoveResult, error) {
			res, err := d.vols.Move(ctx, r.Volume)
			return &res, err
		}),
		peers.Unary("Holds", func(ctx context.Context, r *holdsRequest) (*volume.Holding, error) {
			h, err := d.vols.Holding(ctx, r.Volume)
			return &h, err
		}),
		peers.Unary("RemovalAsked", func(ctx context.Context, r *removalRequest) (*removalReply, error) {
			asked, err := d.vols.RemovalAsked(ctx, r.Volume, r.Epoch)
			return &removalReply{Asked: asked}, err
		}),
		peers.Unary("CopyHere", func(ctx context.Context, r *copyRequest) (*volume.CopyResult, error) {
			res, err := d.vols.Copy(ctx, r.Volume, r.Copy)
			return &res, err
		}),
		peers.Unary("Ping", func(context.Context, *pingRequest) (*pingReply, error) { return &pingReply{Node: d.cfg.Name}, nil }),
		peers.Unary("BackupHere", func(ctx context.Context, r *backupRequest) (*backup.Result, error) {
			res, err := d.backupHere(ctx, r)
			return &res, err
		}),
		peers.Unary("BackupProgress", func(_ context.Context, r *backupProgressRequest) (*backupProgressReply, error) {
			return &backupProgressReply{Progress: d.backups.get(r.Volume)}, nil
		}),
		peers.Unary("SyncReplica", d.syncReplicaHere),
		peers.Unary("DropReplica", d.dropReplicaHere),
	)
}

// controlServiceName is the name of the node-to-node control service; its methods are
// called as controlServiceName+"/"+method.
const controlServiceName = "drayage.Control"

// MoveVolume moves a volume to node: here directly, or by asking node over the cluster
// network.
func (d *Daemon) MoveVolume(ctx context.Context, name, to string) (volume.MoveResult, error) {
	if to == "" || to == d.cfg.Name {
		return d.vols.Move(ctx, name)
	}
	var res volume.MoveResult
	return res, d.forward(ctx, "move", fmt.Sprintf("move volume %q to node %q", name, to), to, "MoveHere", &moveRequest{Volume: name}, &res)
}

// CopyVolume copies a volume into a new volume newName on node: here directly, or by
// asking node over the cluster network.
func (d *Daemon) CopyVolume(ctx context.Context, name, newName, to string) (volume.CopyResult, error) {
	if to == "" || to == d.cfg.Name {
		return d.vols.Copy(ctx, name, newName)
	}
	var res volume.CopyResult
	return res, d.forward(ctx, "copy", fmt.Sprintf("copy volume %q to node %q", name, to), to, "CopyHere", &copyRequest{Volume: name, Copy: newName}, &res)
}

// PromoteVolume makes a replica of a volume whose owner is down the volume: the store
// transaction runs here, and the replica's node takes the volume over when it sees it.
func (d *Daemon) PromoteVolume(ctx context.Context, name, to string, acceptLoss bool) (volume.PromoteResult, error) {
	return d.vols.Promote(ctx, name, to, acceptLoss)
}

// forward asks node to, over mutual TLS, to run op ("move", "copy", "backup") on volume
// name: it calls method of to's control service. what says the request in errors ("move
// volume "db" to node "b"").
func (d *Daemon) forward(ctx context.Context, op, what, to, method string, req, res any) error {
	n := d.net.Load()
	if n == nil {
		return fmt.Errorf("cannot %s: node %q runs alone (no certificate in its TLS dir); run the %s on node %q", what, d.cfg.Name, op, to)
	}
	m, ok := n.gossip.Member(to)
	if !ok || m.Meta.Control == "" {
		return fmt.Errorf("cannot %s: node %q is not a member of this cluster; see 'drayage node ls'", what, to)
	}
	if m.State != "alive" {
		return fmt.Errorf("cannot %s: node %q is %s (last seen %s); start drayage there, then retry", what, to, m.State, m.LastSeen.Format("15:04:05"))
	}
	if err := peers.Call(ctx, n.id, to, m.Meta.Control, controlServiceName+"/"+method, req, res); err != nil {
		// The target's own error, as it wrote it (it names the volume and what to do).
		return errors.New(status.Convert(err).Message())
	}
	return nil
}
