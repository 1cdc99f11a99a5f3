// Package volume is the node's volume manager: the logic behind every Docker volume plugin
// call (Create, Remove, Mount, Unmount, Path, Get, List) and the drayage CLI (Move, Copy,
// Delete). It decides what happens to volumes; it knows nothing of the network, and
// reaches other nodes only through the Puller the daemon gives it (SetPuller).
//
// A Manager is created at once and answers ErrNotReady until Init has opened the state
// dir and restored the mounts that were active before a restart, so the plugin socket can
// listen before any slow work.
//
// # Where things are
//
//	manager.go   the Manager, Init, Close, and what each lock guards
//	state.go     what the manager keeps in memory about each volume
//	create.go    Create
//	mount.go     Mount, Unmount, Path, the bind mounts
//	deadmounts.go releasing restored mounts whose containers died with the engine
//	pull.go      how a volume held elsewhere comes here: claim, job, pull, commit
//	puller.go    the Puller interface (implemented by the daemon over the network)
//	move.go      Move ('drayage volume move')
//	copy.go      Copy ('drayage volume copy')
//	remove.go    Remove, Delete and finishing a removal
//	info.go      Get, Lookup, List, LocalStates
//	progress.go  how far a transfer has come, published to the cluster store
//	peer.go      what this node answers other nodes (SendDir, Holding, RemovalAsked)
//	replicate.go a replicated volume's owner: when to sync its replicas, to which nodes
//	replica.go   a replica's node: SyncReplica (staged, swapped in whole), DropReplica
//	judge.go     what to do with this node's copy given its cluster record (pure)
//	settle.go    Reconcile: acting on judge, claims, removals, staging sweep
//	errors.go    the sentinel errors and the messages built on them
//
// # A Mount, top to bottom
//
// Mount (mount.go) validates the name, waits for readiness and takes the volume's lock
// (begin), then reads the cluster record, settling this node's copy against it first if
// it must (settledEntry, settle.go). A volume held here is claimed in the cluster on the
// node's lease and bind-mounted (mountHere). A volume held elsewhere is pulled (pull.go):
// joinPull claims it for this node and starts a job, which pulls it through the Puller
// into staging, installs it pending, commits the move in the cluster (the epoch goes up
// by one) and marks it committed; Mount waits in await until its budget is nearly spent,
// then answers ErrPulling with the progress while the job goes on, and mounts once it
// has arrived.
//
// Mounts are counted per mount ID: the engine may mount one ID twice (docker run) and
// mounts again with the same ID for docker cp. The volume's bind mount is made on the
// first reference and removed on the last; an Unmount of an unknown ID or volume does
// nothing. The counts are kept on disk so a restarted daemon knows which volumes are still
// in use by running containers.
//
// Every error returned to a caller names the volume and the node and says what to do; the
// sentinel errors (ErrNotFound, ErrInUse, ...) are wrapped so callers can tell them apart
// with errors.Is.
package volume
