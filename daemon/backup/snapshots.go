package backup

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/minio/minio-go/v7"

	"github.com/drayage/drayage/daemon/transfer"
)

// Info describes one snapshot, as 'drayage backup ls' lists it.
type Info struct {
	ID     string    `json:"id"`
	Time   time.Time `json:"time"`
	Volume string    `json:"volume"`
	Node   string    `json:"node"`
	// Root is the snapshot's root hash: a restore's tree must hash to it.
	Root    string `json:"root"`
	Entries int    `json:"entries"`
	Files   int    `json:"files"`
	Size    int64  `json:"size"`
	// NewBytes and NewChunks are what this backup stored that the location lacked
	// (content bytes, before compression).
	NewBytes  int64 `json:"new_bytes"`
	NewChunks int   `json:"new_chunks"`
}

const (
	snapshotHeader = "drayage-backup 1\n"
	// maxInfoLine bounds a snapshot's JSON line (it is read first, alone, by List).
	maxInfoLine = 16 << 10
	// maxSnapshot bounds a snapshot's decompressed size: about 100 bytes an entry.
	maxSnapshot = 1 << 30
)

var snapshotDecoder, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(maxSnapshot))

func (r *Repo) snapshotsPrefix() string      { return r.loc.Prefix + "snapshots/" }
func (r *Repo) snapshotKey(id string) string { return r.snapshotsPrefix() + id }

// newID names a snapshot taken at t of a tree with root hash root: IDs sort as their
// times do.
func newID(t time.Time, root string) string {
	return t.UTC().Format(idTime) + "-" + root[:8]
}

// idTime is the time in a snapshot's ID, to the millisecond.
const idTime = "20060102-150405.000"

// Save writes snapshot s, described by info, in one PUT: after it, the snapshot is
// listed and restores.
func (r *Repo) Save(ctx context.Context, info Info, s *transfer.Snapshot) error {
	head, err := json.Marshal(info)
	if err != nil {
		return err
	}
	snap, err := s.MarshalBinary()
	if err != nil {
		return err
	}
	body := binary.AppendUvarint(make([]byte, 0, len(snap)+binary.MaxVarintLen64), uint64(len(snap)))
	body = append(body, snap...)
	body = r.encodeLocs(body, s.Chunks())
	if len(body) > maxSnapshot {
		return fmt.Errorf("snapshot %s of volume %q is %d bytes, more than the %d a snapshot may be: the volume holds too many files (%d entries) for one backup; split it into several volumes",
			info.ID, info.Volume, len(body), maxSnapshot, s.Entries())
	}
	var b bytes.Buffer
	b.WriteString(snapshotHeader)
	b.Write(head)
	b.WriteByte('\n')
	w, err := zstd.NewWriter(&b, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return err
	}
	if _, err := w.Write(body); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	_, err = r.c.PutObject(ctx, r.loc.Bucket, r.snapshotKey(info.ID), &b, int64(b.Len()), minio.PutObjectOptions{ContentType: "application/octet-stream", DisableMultipart: true})
	if err != nil {
		return r.fail("write snapshot "+info.ID, err)
	}
	return nil
}

// List returns the location's snapshots, oldest first. Each is read only as far as its
// description.
func (r *Repo) List(ctx context.Context) ([]Info, error) {
	ids, err := r.listIDs(ctx)
	if err != nil {
		return nil, err
	}
	infos := make([]Info, 0, len(ids))
	for _, id := range ids {
		info, err := r.info(ctx, id)
		if err != nil {
			return nil, err
		}
		infos = append(infos, info)
	}
	return infos, nil
}

// listIDs lists the snapshots' IDs, sorted (oldest first).
func (r *Repo) listIDs(ctx context.Context) ([]string, error) {
	var ids []string
	for o := range r.c.ListObjects(ctx, r.loc.Bucket, minio.ListObjectsOptions{Prefix: r.snapshotsPrefix()}) {
		if o.Err != nil {
			return nil, r.fail("list snapshots", o.Err)
		}
		if id := strings.TrimPrefix(o.Key, r.snapshotsPrefix()); id != "" && !strings.Contains(id, "/") {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// Exists reports whether snapshot id is (still) in the location; it says yes when S3
// can't tell.
func (r *Repo) Exists(ctx context.Context, id string) bool {
	_, err := r.c.StatObject(ctx, r.loc.Bucket, r.snapshotKey(id), minio.StatObjectOptions{})
	return err == nil || minio.ToErrorResponse(err).Code != "NoSuchKey"
}

// info reads a snapshot's description: its first bytes only.
func (r *Repo) info(ctx context.Context, id string) (Info, error) {
	var o minio.GetObjectOptions
	_ = o.SetRange(0, int64(len(snapshotHeader)+maxInfoLine))
	obj, err := r.c.GetObject(ctx, r.loc.Bucket, r.snapshotKey(id), o)
	if err != nil {
		return Info{}, r.fail("read snapshot "+id, err)
	}
	defer obj.Close()
	info, _, err := readHead(bufio.NewReaderSize(obj, len(snapshotHeader)+maxInfoLine+1), id)
	if err != nil {
		return Info{}, r.fail("read snapshot "+id, err)
	}
	return info, nil
}

// readHead reads a snapshot's header line and description, and returns the reader at
// the compressed snapshot.
func readHead(br *bufio.Reader, id string) (Info, *bufio.Reader, error) {
	var info Info
	head := make([]byte, len(snapshotHeader))
	if _, err := io.ReadFull(br, head); err != nil || string(head) != snapshotHeader {
		return info, nil, cmp.Or(err, fmt.Errorf("%w: snapshot %s is not a drayage backup snapshot (or of a later version)", transfer.ErrHostile, id))
	}
	line, err := br.ReadSlice('\n')
	if err != nil {
		return info, nil, fmt.Errorf("%w: snapshot %s: its description is cut short or too long: %w", transfer.ErrHostile, id, err)
	}
	if err := json.Unmarshal(line, &info); err != nil {
		return info, nil, fmt.Errorf("%w: snapshot %s: its description: %w", transfer.ErrHostile, id, err)
	}
	if info.ID != id {
		return info, nil, fmt.Errorf("%w: snapshot %s says it is %q", transfer.ErrHostile, id, info.ID)
	}
	return info, br, nil
}

// Load reads snapshot id whole ("": the latest); the repo learns where its chunks are.
func (r *Repo) Load(ctx context.Context, id string) (Info, *transfer.Snapshot, error) {
	info, s, locs, err := r.load(ctx, id)
	if err != nil {
		return info, nil, err
	}
	r.mu.Lock()
	maps.Copy(r.locs, locs)
	r.mu.Unlock()
	return info, s, nil
}

// load reads snapshot id whole ("": the latest), and where its chunks in packs are.
func (r *Repo) load(ctx context.Context, id string) (Info, *transfer.Snapshot, map[[32]byte]chunkLoc, error) {
	if id == "" {
		ids, err := r.listIDs(ctx)
		if err != nil {
			return Info{}, nil, nil, err
		}
		if len(ids) == 0 {
			return Info{}, nil, nil, fmt.Errorf("%s holds no snapshot: %w; back a volume up there first ('drayage volume backup NAME --to %s')", r.loc, ErrNotFound, r.loc)
		}
		id = ids[len(ids)-1]
	}
	obj, err := r.c.GetObject(ctx, r.loc.Bucket, r.snapshotKey(id), minio.GetObjectOptions{})
	if err != nil {
		return Info{}, nil, nil, r.fail("read snapshot "+id, err)
	}
	defer obj.Close()
	info, rest, err := readHead(bufio.NewReaderSize(obj, 64<<10), id)
	if err != nil {
		var resp minio.ErrorResponse
		if errors.As(err, &resp) {
			return Info{}, nil, nil, r.fail("read snapshot "+id, err)
		}
		return Info{}, nil, nil, err
	}
	z, err := io.ReadAll(io.LimitReader(rest, maxSnapshot+1))
	if err != nil {
		return Info{}, nil, nil, r.fail("read snapshot "+id, err)
	}
	body, err := snapshotDecoder.DecodeAll(z, nil)
	if err != nil {
		return Info{}, nil, nil, fmt.Errorf("%w: snapshot %s in %s: %w", transfer.ErrHostile, id, r.loc, err)
	}
	n, k := binary.Uvarint(body)
	if k <= 0 || n > uint64(len(body)-k) {
		return Info{}, nil, nil, fmt.Errorf("%w: snapshot %s in %s is cut short", transfer.ErrHostile, id, r.loc)
	}
	s, err := transfer.UnmarshalSnapshot(body[k : k+int(n)])
	if err != nil {
		return Info{}, nil, nil, fmt.Errorf("snapshot %s in %s: %w", id, r.loc, err)
	}
	locs, err := decodeLocs(body[k+int(n):])
	if err != nil {
		return Info{}, nil, nil, fmt.Errorf("snapshot %s in %s: %w", id, r.loc, err)
	}
	if s.Root() != info.Root {
		return Info{}, nil, nil, fmt.Errorf("%w: snapshot %s in %s: its description says root %s, its content %s", transfer.ErrHostile, id, r.loc, info.Root, s.Root())
	}
	return info, s, locs, nil
}
