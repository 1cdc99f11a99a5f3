package volume

import (
	"context"
	"time"

	"github.com/drayage/drayage/progress"
)

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
	// SyncReplica asks node to bring its replica of volume up to date from this node,
	// which holds the volume at epoch (replicate.go), as how says. It returns once the
	// node has the synced tree in place and recorded.
	SyncReplica(ctx context.Context, node, volume string, epoch uint64, how SyncHow) (ReplicaSynced, error)
	// DropReplica asks node to delete its replica of volume, which this node holds at
	// epoch with enough replicas elsewhere.
	DropReplica(ctx context.Context, node, volume string, epoch uint64) error
	// Peers lists the other nodes gossip knows, with their free space.
	Peers() []Peer
	// Answers reports whether node answers a call on its control port within ctx,
	// whatever gossip says of it: what a failover asks before it replaces a node.
	Answers(ctx context.Context, node string) bool
}

// Peer is another node as gossip knows it.
type Peer struct {
	Name     string
	Alive    bool
	LastSeen time.Time
	// Free is the free space, in bytes, of the node's state dir, as it last said.
	Free int64
}

// SyncHow says how a replica syncs.
type SyncHow struct {
	// Clean says no container on the owner mounts the volume.
	Clean bool `json:"clean,omitempty"`
	// Walk has the owner read its volume whole, trusting no record of it
	// (transfer.TreePath): what a change log can miss (a write through a shared memory
	// map) is found.
	Walk bool `json:"walk,omitempty"`
	// Verify has the replica's node read its trees whole too: a record that no longer
	// holds is found.
	Verify bool `json:"verify,omitempty"`
}

// ReplicaSynced is what a replica's sync brought.
type ReplicaSynced struct {
	// Root is the synced tree's root hash (hex); Bytes the volume's size; Sent the
	// content bytes that crossed the wire.
	Root  string `json:"root"`
	Bytes int64  `json:"bytes"`
	Sent  int64  `json:"sent"`
}

// Pulled is what a pull brought.
type Pulled struct {
	// Size is the volume's size; Root its root hash (hex), verified with its sender.
	Size int64
	Root string
	// Sent is the content bytes that crossed the wire: what differed from staging.
	Sent int64
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
	Progress func(progress.Counts)
	// Live says the volume may be written while it is sent: a replica's sync.
	Live bool
	// Walk: the sender reads the volume whole (SyncHow.Walk); Verify: so does the
	// receiver its staging tree (SyncHow.Verify).
	Walk, Verify bool
}
