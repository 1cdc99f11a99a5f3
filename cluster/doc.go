// Package cluster is what the nodes of a drayage cluster share: the authoritative record
// of where every volume lives and who may write it, kept in a consistent store (etcd,
// Consul, or an etcd server embedded in the daemon).
//
// # Packages
//
//	cluster              the Store contract and the Registry of volumes, claims and nodes
//	cluster/backends     opens a Store from a --store URL (embedded, etcd://, consul://)
//	cluster/embedded     the etcd cluster the nodes form by themselves, a member per node
//	                     up to three voters, and a Store over it
//	cluster/etcdstore    a Store over an etcd cluster
//	cluster/consulstore  a Store over Consul's KV, sessions and blocking queries
//	cluster/storetest    the conformance suite every Store runs against a real server
//	cluster/clustertest  a shared embedded store for other packages' tests
//	cluster/gossip       membership: which nodes are up and where their ports are
//	cluster/identity     who a node is: the cluster CA, node certificates, mutual TLS
//
// Store is the narrow key-value contract every backend implements (store.go):
// linearizable reads, multi-key compare-and-swap transactions on revisions, prefix
// watches and leases. The store is the truth about ownership; gossip only says who is
// reachable, and identity says who is who.
//
// # The registry
//
// Registry keeps its records in a store under a prefix (default "drayage/"), one file
// per record kind:
//
//	PREFIX/volumes/NAME   volumes.go: the volume record: owner node, epoch, size, options,
//	                      root hash; removal.go marks it for removal, then deletes it
//	PREFIX/claims/NAME    claims.go: who holds the volume now, on the holder's lease
//	PREFIX/mounted/NAME   mountmark.go: that a node mounts it, on no lease
//	PREFIX/nodes/NAME     nodes.go: a node: addresses, version, last seen
//	PREFIX/progress/NAME  progress.go: how far the transfer the volume's claim runs under
//	                      has come, written by the receiver at most once a second, on
//	                      its lease
//	PREFIX/replicas/NAME/NODE  replicas.go: NODE's warm copy of the volume: the epoch,
//	                      time and root hash of its last completed sync, written by
//	                      NODE once the synced tree is in place, fenced on the epoch
//
// Every change is made the same way (registry.go, change): read the record and the
// claim, decide, write in one transaction conditioned on the revisions read, and on a
// conflict read and decide again, or refuse with what now holds the volume.
//
// A volume's state is derived, never stored: no claim means idle; a mount claim by the
// owner means mounted; a migrate claim by another node means migrating there; a copy
// claim means a node is copying it into a new volume (the owner sends it to that node
// only, and nobody mounts or moves it until FinishCopy creates the new volume and drops
// the claim in one transaction). A claim lives on its holder's lease, so when the holder
// dies or is cut off the claim expires with the lease and the volume is idle again at its
// old owner, whose data was never touched; the mount mark, on no lease, keeps a volume
// that a cut-off node may still be writing from being moved or removed. The epoch is the
// fencing token: it increases on every ownership change, a migration commits only if the
// record and the claim are exactly as they were when it began, and a write carrying an
// older epoch is refused with ErrStaleEpoch.
package cluster
