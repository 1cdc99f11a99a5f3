// Package daemon is the node agent. A Daemon owns the node's volume manager, its local
// control API, its part in the cluster network (gossip, the control port, the data port)
// and its loops (lease, heartbeat, reconcile, removal watch); cmd/drayage wires the
// Docker plugin socket (package plugin) in front of it.
//
// Start-up is split so the engine never waits on slow work: New is instant and returns a
// manager that answers "starting, retry" until Run has opened the state dir and restored
// mounts. The caller opens the plugin socket between New and Run. Run returns once every
// goroutine it started has ended.
//
// Files:
//
//	daemon.go  New and Run: the network, the store, the lease, the loops, the control socket
//	store.go   opening the store; the embedded store's part: found through gossip,
//	           its members (drayage store ls/remove/snapshot) and its quorum gauge
//	config.go  the settings (flags and DRAYAGE_* variables) and their checks
//	node.go    joining the cluster network: identity, gossip, the control and data ports
//	puller.go  the volume manager's Puller: how a pull reaches the transfer engine
//	move.go    the node-to-node control service (MoveHere, CopyHere, Holds, RemovalAsked)
//	replicas.go replica syncs and drops asked across the network, free space in gossip,
//	           the change tracker (package changes) that spares unchanged volumes a sync
//	status.go  'drayage status': this node, the store, members, volumes, transfers
//
// Packages, from the top down:
//
//	volume      the volume manager: every plugin call's logic; knows no network
//	localstore  the node's volumes on disk, crash-safe
//	mount       bind mounts that hand volumes to the engine
//	transfer    the transfer engine: a volume from one node's disk to another's staging
//	peers       gRPC between nodes over mutual TLS: the control port's server and calls
//	control     the local control API on control.sock, and its client
//	metrics     the node's Prometheus metrics, served on --metrics-addr (docs/metrics.md)
//	internal/keylock    one lock per volume name
//	internal/failpoint  named points where a test build stops the daemon (-tags failpoints)
//
// The volume package may not import transfer, peers, gossip or gRPC, and transfer may
// not import volume or cluster: the daemon joins them (depguard in .golangci.yml).
package daemon
