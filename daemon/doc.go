// Package daemon is the node agent. A Daemon owns the node's volume manager and its
// local control API; cmd/drayage wires the Docker plugin socket (package plugin) in front
// of it.
//
// Start-up is split so the engine never waits on slow work: New is instant and returns a
// manager that answers "starting, retry" until Run has opened the state dir and restored
// mounts. The caller opens the plugin socket between New and Run.
//
// Subpackages:
//
//	volume      the volume manager: every plugin call's logic
//	localstore  the node's volumes on disk, crash-safe
//	mount       bind mounts that hand volumes to the engine
//	control     the local control API on control.sock, and its client
//	metrics     the node's Prometheus metrics, served on --metrics-addr (docs/metrics.md)
package daemon
