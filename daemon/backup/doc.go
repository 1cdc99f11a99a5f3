// Package backup keeps incremental, content-addressed backups of volumes in S3 and reads
// them back: what 'drayage volume backup', 'drayage backup ls' and a volume created with
// -o from=s3://BUCKET/PREFIX/ use.
//
// # Layout
//
// A backup location is a bucket and a prefix, for one volume. Under the prefix:
//
//	objects/XX/HASH   a chunk of file content of 512 KiB or more (at most
//	                  transfer.SnapshotChunk), zstd-compressed, named by the BLAKE3 hash
//	                  of its content (XX is the hash's first byte): each chunk is stored
//	                  once, whatever the files and snapshots that hold it
//	packs/XX/HASH     smaller chunks (small files), zstd-compressed each, one after the
//	                  other in packs of about 8 MiB, named by the pack's BLAKE3 hash
//	snapshots/ID      one backup: a line "drayage-backup 1", a line of JSON (Info:
//	                  time, volume, node, root hash, sizes), then, zstd-compressed, the
//	                  snapshot (transfer.Snapshot: the manifest, every file's chunk
//	                  hashes) and where its chunks in packs are (pack, offset, length).
//	                  ID is the time, UTC, to the millisecond, and the root hash's start:
//	                  IDs sort by time, each after the one before it
//	lock              the lease of the node writing there now (lock.go)
//
// A snapshot is written last, in one PUT, after every chunk and pack it names: a backup
// cut off at any point leaves the snapshots before it whole, and objects no snapshot
// names, which the next prune removes.
//
// # Pruning
//
// Prune keeps the newest snapshots and removes the others, then removes the chunks that
// no snapshot left names. Snapshots go first, and the chunks still named are read from
// the snapshots listed after that: a prune cut off at any point has removed no chunk a
// remaining snapshot names. A snapshot that can't be read stops the removal of chunks.
//
// One node writes to a location at a time: a node's backups of one location run one
// after the other, and across nodes the lease in PREFIX/lock keeps them apart (a volume
// that moved while its old owner still backs it up); a location holds one volume's
// backups (a backup of another volume to it is refused). A chunk is reused only from the
// previous snapshot, never because an object of its name exists.
//
// Files:
//
//	location.go  where backups go: s3://BUCKET/PREFIX/, and @SNAPSHOT
//	repo.go      Repo: chunks in and out (transfer.Blobs)
//	pack.go      small chunks in packs, and packs read back
//	snapshots.go snapshots written, listed and read
//	lock.go      the lease that keeps one node writing to a location
//	prune.go     Prune: old snapshots and the chunks only they named
//	run.go       Run: one backup of a tree, from the previous snapshot, then a prune
package backup
