// Package localstore keeps the volumes a node holds on its own disk.
//
// Layout under the state dir (--root):
//
//	volumes/NAME/volume.json   the record: options, creation time, mount references
//	volumes/NAME/data/         the volume's files, handed to containers
//	tmp/                       volumes being created; renamed into volumes/ when complete
//	trash/                     volumes being deleted (renamed out of volumes/ first), and
//	                           trees an install replaced (deleted in the background)
//
// Every change is crash-safe: a volume appears in volumes/ only once it is complete
// (create builds it in tmp/ and renames it in), a record is replaced by writing a
// temporary file, fsyncing it and renaming it over the old one, and a removal renames the
// volume out of volumes/ before deleting its files. Leftovers in tmp/ and trash/ are
// swept by Open.
//
// The store does no locking of its own: callers serialise operations on one volume.
package localstore
