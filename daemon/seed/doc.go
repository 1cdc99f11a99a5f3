// Package seed brings the first content of a volume created with -o from=URL: an archive
// (.tar, .tar.gz or .tar.zst, told apart by its first bytes) at an https or http URL or
// an S3 object.
//
// source.Parse checks a source as a volume option gives it. A Fetcher downloads the archive to
// a file beside the volume's staging tree, resuming a download that was cut or whose
// daemon restarted (HTTP Range with If-Range, S3 ranged GETs matching the object's
// ETag), and checks the whole file against the sha256 the volume was created with. Open
// then reads the archive's tar stream, decompressed, as transfer.Unpack wants it: the
// unpacking, with every rule a receiver has, is the transfer engine's.
//
// Files:
//
//	source/      what a volume's from and sha256 options may say (no network: the volume manager checks options with it)
//	fetch.go     Fetcher: a download to a file, resumed, verified
//	http.go      the download over HTTP(S), by ranges
//	s3.go        the download from S3, by ranges (minio-go)
//	archive.go   the archive's compression, told by its first bytes, and Open
package seed
