// Package cluster holds the authoritative record of where every volume lives and who may
// write it, in a consistent store shared by all nodes (etcd, Consul, or an etcd server
// embedded in the daemon).
//
// Store is the narrow key-value contract every backend implements: linearizable reads,
// multi-key compare-and-swap transactions on revisions, prefix watches and leases.
// Backends live in subpackages (etcdstore, consulstore, embedded); package backends opens
// one from a --store URL; storetest is the conformance suite each runs against a real
// server.
//
// Registry keeps volume records, claims and node records in a store, under a prefix
// (default "drayage/"):
//
//	PREFIX/volumes/NAME   the volume record: owner node, epoch, size, options
//	PREFIX/claims/NAME    who holds the volume now, attached to the holder's lease
//	PREFIX/nodes/NAME     a node: addresses, version, last seen
//	PREFIX/progress/NAME  how far the transfer the volume's claim runs under has come,
//	                      written by the receiver at most once a second, on its lease
//
// A volume's state is derived, never stored: no claim means idle; a mount claim by the
// owner means mounted; a migrate claim by another node means migrating there; a copy
// claim means a node is copying it into a new volume (the owner sends it to that node
// only, and nobody mounts or moves it until FinishCopy creates the new volume and drops
// the claim in one transaction). A claim
// lives on its holder's lease, so when the holder dies or is cut off the claim expires
// with the lease and the volume is idle again at its old owner, whose data was never
// touched. The epoch is the fencing token: it increases on every ownership change, a
// migration commits only if the record and the claim are exactly as they were when it
// began, and a write carrying an older epoch is refused with ErrStaleEpoch.
package cluster
