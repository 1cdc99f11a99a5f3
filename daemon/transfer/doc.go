// Package transfer copies one volume's tree from the node that holds it to the node
// that needs it: fast, verified, resumable, and safe against a hostile sender.
//
// # Using it
//
// The sending node makes a Server with its identity and an Authorizer, which says whether
// a node may receive a volume at an epoch and where the volume's files are (the daemon's
// asks the volume manager). It registers Server.ServiceDesc on its control server
// (peers.Server) and serves data streams with ServeData on the data port. Close stops
// it: it ends the transfers it sends (their receivers' pulls fail and may be retried) and
// returns once every goroutine it started has ended.
//
// The receiving node calls Pull with its identity, the sender's name and control address,
// the volume, the epoch of its claim and a staging dir; when Pull returns, staging holds
// the whole tree, verified and durable, and Install puts it in place of the old tree in
// one atomic step. ExamplePull does both on loopback.
//
// Timeouts: each control call has its own bound (Open walks the volume, Finish hashes
// what it must); a data stream that moves no byte for PullOptions.IdleTimeout or
// Server.IdleTimeout (DefaultIdleTimeout) fails; a sender drops a transfer whose receiver
// neither streamed nor called for Server.StaleAfter. Pull's context ends the pull at any
// point, and with it everything the pull started.
//
// Errors, with errors.Is: ErrHostile, the sender sent something a well-behaved one never
// does (nothing of it is written); ErrCorrupt, a file was damaged in transit (Pull asks
// for it again, up to three attempts); ErrRootMismatch, the two ends disagree on the
// tree's root hash (Pull tries again with every file sent). On the sending side, an
// Authorizer's error that wraps ErrStaleClaim counts as a claim that is not the volume's
// current one.
//
// # How a pull goes
//
// The receiver asks; the sender walks its tree into a manifest (walk): every entry with
// what must arrive intact (kind, numeric owner, mode with setuid/setgid/sticky, nanosecond
// mtime, symlink target, hardlink identity, extended attributes and POSIX ACLs, device
// numbers). The receiver validates it (entry.Validate), prepares its staging dir (newSink)
// and asks only for the files it lacks: same size and mtime means already there, so
// sending an unchanged volume costs a manifest, not a copy. Everything the manifest does
// not list is removed from staging.
//
// Both ends walk their trees at once (walk.go): on a delta, the two walks are most of the
// time. Contents travel on several data streams at once, in compact frames (protocol.go
// describes the protocol) read into one reused buffer, so memory stays flat whatever the
// file sizes. The sender opens the wanted files, and asks the disk for their first bytes,
// ahead of the streams. Holes travel as holes. Each file is hashed with BLAKE3 as it
// streams and checked on arrival. A file is written in place in staging (an older copy's
// file is written over) and gets its times last, only once its hash matches: a file whose
// times are not yet the manifest's is incomplete and is sent again, so an interrupted pull
// resumes from the verified files only (a file that fails is removed at once). Finish
// makes staging durable with one syncfs and returns the tree's root hash, which the
// sender computes too. The root hash covers every file of the tree, the ones the receiver
// already had included: each end keeps its files' hashes beside its tree (hashindex.go),
// valid while a file's size and times, change time included, are those recorded, and
// reads and hashes a file that has none. If the two roots differ, the pull is made again
// with every file sent.
//
// A volume of many small files costs a few system calls per file on each side, and they,
// not the network or the disk, bound such a transfer: dirs.go explains how the per-file
// work is kept to open, read or write, set times and close.
//
// What a container could use to gain privileges on the receiving node (setuid files,
// file capabilities, trusted.* attributes, devices) arrives only for a volume that allows
// it (policy.go). The sender never leaves the volume's file system: a mount inside it is
// left out. Data streams give up on a peer that sends or reads nothing for a while
// (deadline.go); a sender limits the transfers and connections it serves at once, and
// pulls running at once reserve free space together (space.go).
//
// The receiver never trusts a name: it works through an os.Root on the staging dir, so
// "..", absolute names, names through symlinks, and hardlinks to outside are impossible
// there, and Validate refuses them earlier with ErrHostile; so are oversized names, frames
// and attribute lists, sizes beyond the volume's limit or the free space, content for a
// file not asked for, and more data than a file declared. The sender reads through an
// os.Root too and never follows a symlink.
//
// # Files
//
// The receiving side, in the order a pull runs:
//
//	pull.go          Pull and Install: a pull from start to end, its streams and retries
//	sink.go          the receiver's staging dir: what stays, what is sent, what goes
//	sink_receive.go  file data arriving on a stream, verified, written in place
//	sink_finish.go   links, special files, metadata, one syncfs, the root hash
//	space.go         free space reserved across the pulls running at once
//
// The sending side:
//
//	service.go       Server: the control calls (Open, Want, Finish), expiry and Close
//	service_data.go  the data port: each stream matched to its transfer, within limits
//	source.go        a tree being sent: files opened ahead, the rest hashed, root hash
//	source_send.go   the wanted files written to a data stream
//	status.go        Sending: what this node sends now
//
// Shared by both:
//
//	protocol.go      the wire protocol: control messages, frames, versions
//	manifest.go      the manifest's entries, their encoding and validation
//	walk.go          listing a tree with several workers, never leaving its mount
//	dirs.go          per-file system calls relative to an open directory
//	meta.go          owner, mode, attributes and times applied to a file
//	policy.go        privileged content, and stripping it
//	hashindex.go     the file hashes each end keeps beside its tree
//	filehash.go      hashing a file, and a few files at once
//	wire.go          compression and the bandwidth limit
//	deadline.go      idle timeouts on data streams
//	statx.go         telling a mount inside the tree from the tree
//	failure.go       why a pull failed, for metrics
package transfer
