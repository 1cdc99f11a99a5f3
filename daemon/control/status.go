package control

import (
	"context"
	"net/http"
	"time"

	"github.com/drayage/drayage/cluster/embedded"

	"github.com/drayage/drayage/progress"
)

// Status is what 'drayage status' shows: this node, the cluster store's health, the
// cluster's members, the volumes held here and the transfers running through this node.
type Status struct {
	Node    NodeStatus  `json:"node"`
	Store   StoreStatus `json:"store"`
	Members []NodeInfo  `json:"members"`
	// Volumes counts the volumes this node holds.
	Volumes   VolumeCounts     `json:"volumes"`
	Transfers []TransferStatus `json:"transfers"`
	// Warnings are what needs an operator: diverged copies (writes a failover left
	// behind), each naming the volume, its node and what to do.
	Warnings []string `json:"warnings,omitempty"`
}

// NodeStatus describes this node.
type NodeStatus struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// Cluster is the gossip cluster name; empty, like the addresses, on a node that runs
	// alone (no certificate in its TLS dir).
	Cluster string `json:"cluster,omitempty"`
	// Gossip, Control and Data are the advertised addresses.
	Gossip  string `json:"gossip,omitempty"`
	Control string `json:"control,omitempty"`
	Data    string `json:"data,omitempty"`
	// Root is the state dir (control.sock is there).
	Root          string    `json:"root"`
	Started       time.Time `json:"started"`
	UptimeSeconds int64     `json:"uptime_seconds"`
}

// StoreStatus is the cluster store's health, as seen from this node by reading this
// node's record.
type StoreStatus struct {
	// Kind is embedded, etcd or consul; Endpoints the addresses of etcd or Consul.
	Kind      string   `json:"kind"`
	Endpoints []string `json:"endpoints,omitempty"`
	Prefix    string   `json:"prefix"`
	// OK says whether the timed read succeeded; LatencyMS is how long it took, in
	// milliseconds, and Error why it failed.
	OK        bool    `json:"ok"`
	LatencyMS float64 `json:"latency_ms"`
	Error     string  `json:"error,omitempty"`
	// Role is this node's part in the embedded store (voter, learner, client), and
	// Quorum whether its voting members have a leader; both only for the embedded store.
	Role   string           `json:"role,omitempty"`
	Quorum *embedded.Quorum `json:"quorum,omitempty"`
	// Records is the protocol version the store's records are in (0: not read).
	Records int `json:"records,omitempty"`
}

// VolumeCounts counts the volumes a node holds, by state (idle, mounted, migrating,
// copying, ...).
type VolumeCounts struct {
	Total   int            `json:"total"`
	ByState map[string]int `json:"by_state"`
}

// Directions of a transfer.
const (
	DirectionIn  = "in"
	DirectionOut = "out"
)

// TransferStatus is a transfer running through this node: a volume it receives ("in")
// or sends ("out"). Its Kind is empty for a transfer out whose receiver has not reported
// yet; the Files counts are known only for a transfer in.
type TransferStatus struct {
	progress.Transfer
	// Direction is DirectionIn or DirectionOut; Peer is the node at the other end.
	Direction string `json:"direction"`
	Peer      string `json:"peer"`
	// ID is the transfer's ID (sending side), as its log lines say it.
	ID string `json:"id,omitempty"`
}

// Status returns the daemon's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	return call[Status](ctx, c, http.MethodGet, "/v1/status", nil)
}

func handleStatus(nodes Nodes) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, err := nodes.Status(r.Context())
		reply(w, s, err)
	}
}
