package backup

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/minio/minio-go/v7"

	"github.com/drayage/drayage/daemon/internal/failpoint"
	"github.com/drayage/drayage/daemon/transfer"
)

// ErrNotFound means the location holds no such snapshot (or no snapshot at all), or a
// chunk a snapshot names is missing.
var ErrNotFound = errors.New("not found")

// ErrRefused means S3 refused the location: no such bucket, or access denied. Trying
// again does not help.
var ErrRefused = errors.New("S3 refused the request")

// Repo is one backup location, reached through an S3 client, for one backup or restore
// at a time. It is a transfer.Blobs: chunks go in and out compressed, under their hash.
// A chunk of packMin bytes or more is an object of its own; smaller ones (small files)
// are gathered into packs (pack.go), so that a volume of many small files costs a few
// requests, not one per file.
type Repo struct {
	c   *minio.Client
	loc Location

	mu sync.Mutex
	// locs says where chunks that live in packs are: from the snapshots read, and the
	// packs this backup wrote.
	locs map[[32]byte]chunkLoc
	// open is the pack being filled, and the chunks in it.
	open    []byte
	pending []pendingChunk
	packs   packCache
}

// Open returns the Repo at loc.
func Open(c *minio.Client, loc Location) *Repo {
	return &Repo{c: c, loc: loc, locs: map[[32]byte]chunkLoc{}}
}

// Location is where the repo is.
func (r *Repo) Location() Location { return r.loc }

// Chunks are compressed fast (a backup is bound by reading and uploading) and, read
// back, refused if they decompress to more than a chunk holds.
var (
	encoder, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	decoder, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(transfer.SnapshotChunk))
)

func (r *Repo) objectKey(sum [32]byte) string {
	h := hex.EncodeToString(sum[:])
	return r.loc.Prefix + "objects/" + h[:2] + "/" + h
}

// Put stores a chunk under its hash: as an object of its own, or in the open pack.
func (r *Repo) Put(ctx context.Context, sum [32]byte, data []byte) error {
	z := encoder.EncodeAll(data, make([]byte, 0, len(data)/2+64))
	if len(data) < packMin {
		return r.addToPack(ctx, sum, z)
	}
	if err := r.putObject(ctx, r.objectKey(sum), z); err != nil {
		return r.fail("store chunk "+hex.EncodeToString(sum[:8]), err)
	}
	failpoint.Hit("backup-chunk-stored")
	return nil
}

// putObject writes one object.
func (r *Repo) putObject(ctx context.Context, key string, b []byte) error {
	_, err := r.c.PutObject(ctx, r.loc.Bucket, key, bytes.NewReader(b), int64(len(b)),
		minio.PutObjectOptions{ContentType: "application/zstd", DisableMultipart: true})
	return err
}

// Get returns the chunk stored under sum, decompressed (the caller checks its hash).
func (r *Repo) Get(ctx context.Context, sum [32]byte) ([]byte, error) {
	r.mu.Lock()
	loc, packed := r.locs[sum]
	r.mu.Unlock()
	var z []byte
	var err error
	if packed {
		z, err = r.fromPack(ctx, sum, loc)
	} else {
		z, err = r.read(ctx, r.objectKey(sum), maxChunkObject)
	}
	if err != nil {
		return nil, err
	}
	data, err := decoder.DecodeAll(z, nil) // sized by the frame header
	if err != nil {
		return nil, fmt.Errorf("%w: chunk %x in %s is not zstd of at most %d bytes: %w", transfer.ErrCorrupt, sum[:8], r.loc, transfer.SnapshotChunk, err)
	}
	return data, nil
}

// maxChunkObject bounds a chunk's object: zstd never makes data much larger.
const maxChunkObject = transfer.SnapshotChunk + transfer.SnapshotChunk/8

// read reads the object at key whole, refusing one of more than limit bytes.
func (r *Repo) read(ctx context.Context, key string, limit int64) ([]byte, error) {
	obj, err := r.c.GetObject(ctx, r.loc.Bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, r.fail("read "+key, err)
	}
	defer obj.Close()
	b, err := io.ReadAll(io.LimitReader(obj, limit+1))
	if err != nil {
		return nil, r.fail("read "+key, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: %s in %s is larger than %d bytes", transfer.ErrCorrupt, key, r.loc, limit)
	}
	return b, nil
}

// fail says what S3 answered to the operation op on the repo.
func (r *Repo) fail(op string, err error) error {
	resp := minio.ToErrorResponse(err)
	switch {
	case resp.Code == "NoSuchKey":
		return fmt.Errorf("%s in %s: %w (%s)", op, r.loc, ErrNotFound, resp.Message)
	case resp.Code == "NoSuchBucket" || resp.Code == "AccessDenied" || resp.Code == "InvalidAccessKeyId" || resp.Code == "SignatureDoesNotMatch" || resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("%s in %s: %w: S3 at %s answered %s (%s); check the bucket, and DRAYAGE_S3_ACCESS_KEY and DRAYAGE_S3_SECRET_KEY_FILE on this node",
			op, r.loc, ErrRefused, r.c.EndpointURL().Host, resp.Code, resp.Message)
	}
	return fmt.Errorf("%s in %s (S3 at %s): %w", op, r.loc, r.c.EndpointURL().Host, err)
}
