// Package transfer copies one volume's tree from the node that holds it to the node
// that needs it: fast, verified, resumable, and safe against a hostile sender.
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
// describes the protocol) read into one reused buffer, so memory stays flat whatever the file sizes. The sender
// opens the wanted files, and asks the disk for their first bytes, ahead of the streams.
// Holes travel as holes. Each file is hashed with BLAKE3 as it streams and checked on
// arrival. A file is written in place in staging (an older copy's file is written over)
// and gets its times last, only once its hash matches: a file whose
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
package transfer
