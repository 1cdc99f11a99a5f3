// Package backup keeps incremental, content-addressed backups of volumes in S3 and reads
// them back: what 'drayage volume backup', 'drayage backup ls' and a volume created with
// -o from=s3://BUCKET/PREFIX/ use.
//
// # Layout
//
// A backup location is a bucket and a prefix, for one volume. Under the prefix:
//
//	objects/XX/HASH   a chunk of file content (transfer.SnapshotChunk bytes at most),
//	                  zstd-compressed, named by the BLAKE3 hash of its content (XX is
//	                  the hash's first byte): each chunk is stored once, whatever the
//	                  files and snapshots that hold it
//	snapshots/ID      one backup: a line "drayage-backup 1", a line of JSON (Info:
//	                  time, volume, node, root hash, sizes), then the snapshot
//	                  (transfer.Snapshot: the manifest, every file's chunk hashes),
//	                  zstd-compressed. ID is the time, UTC, and the root hash's start,
//	                  so IDs sort by time
//
// A snapshot is written last, in one PUT, after every chunk it names: a backup cut off
// at any point leaves the snapshots before it whole, and chunks no snapshot names, which
// the next prune removes.
//
// # Pruning
//
// Prune keeps the newest snapshots and removes the others, then removes the chunks that
// no snapshot left names. Snapshots go first, and the chunks still named are read from
// the snapshots listed after that: a prune cut off at any point has removed no chunk a
// remaining snapshot names. A snapshot that can't be read stops the removal of chunks.
//
// One node writes to a location at a time: a volume's backups run on its owner, one at
// a time per location on a node, and a location holds one volume's backups (a backup of
// another volume to it is refused). A chunk is reused only from the previous snapshot,
// never because an object of its name exists.
//
// Files:
//
//	location.go  where backups go: s3://BUCKET/PREFIX/, and @SNAPSHOT
//	repo.go      Repo: chunks in and out (transfer.Blobs)
//	snapshots.go snapshots written, listed and read
//	prune.go     Prune: old snapshots and the chunks only they named
//	run.go       Run: one backup of a tree, from the previous snapshot, then a prune
package backup
