package seed

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/drayage/drayage/daemon/seed/source"
)

// ErrRefused means the source answered that it will not give the archive (no such
// object, access denied): trying again does not help.
var ErrRefused = errors.New("the source refused the archive")

// ErrMismatch means the archive arrived whole but its SHA-256 is not the one the volume
// was created with.
var ErrMismatch = errors.New("sha256 mismatch")

// Permanent reports whether err is one that trying again does not cure.
func Permanent(err error) bool {
	return errors.Is(err, ErrRefused) || errors.Is(err, ErrMismatch) || errors.Is(err, source.ErrBad) || errors.Is(err, ErrFormat)
}

// DefaultIdleTimeout is how long a download may receive nothing before the attempt is
// given up (and the next one resumes).
const DefaultIdleTimeout = time.Minute

var errIdle = errors.New("the source went silent")

// idleCause is err, or why the download was given up if the watchdog did it.
func idleCause(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); errors.Is(cause, errIdle) {
		return cause
	}
	return err
}

// S3Config is how the daemon reaches S3 (DRAYAGE_S3_*).
type S3Config struct {
	// Endpoint is the server's URL (https://HOST[:PORT] or http://…); empty: AWS.
	Endpoint, Region     string
	AccessKey, SecretKey string
}

// Fetcher downloads archives. Its zero value reaches https with the system's CAs, and
// S3 with no credentials.
type Fetcher struct {
	// HTTP is the client for https and http sources, and for S3 (nil: a default one).
	HTTP *http.Client
	S3   S3Config
	// IdleTimeout is how long a download may receive nothing (0: DefaultIdleTimeout).
	IdleTimeout time.Duration

	once  sync.Once
	s3    *minio.Client
	s3Err error
}

// Fetched is what one download attempt did.
type Fetched struct {
	// Size is the archive's size once it is whole.
	Size int64
	// From is where this attempt started (bytes kept from earlier attempts), Got what
	// crossed the network in it.
	From, Got int64
	// Restarted says the source would not resume (it changed, or ignores ranges): what
	// an earlier attempt had was thrown away.
	Restarted bool
}

// download is a download's state, kept beside its file: what the source said of the
// archive, and how much of the file is on disk for sure.
type download struct {
	URL       string `json:"url"`
	Validator string `json:"validator,omitempty"` // an HTTP ETag or Last-Modified, an S3 ETag
	Size      int64  `json:"size"`                // -1: unknown
	Synced    int64  `json:"synced"`
	Complete  bool   `json:"complete,omitempty"`
}

func statePath(file string) string { return file + ".json" }

func loadState(file, url string) download {
	var d download
	b, err := os.ReadFile(statePath(file))
	if err != nil || json.Unmarshal(b, &d) != nil || d.URL != url {
		return download{URL: url, Size: -1}
	}
	return d
}

func (d download) save(file string) error {
	b, _ := json.Marshal(d)
	tmp := statePath(file) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, statePath(file))
}

// Discard deletes a download's file and state.
func Discard(file string) {
	_ = os.Remove(file)
	_ = os.Remove(statePath(file))
}

// A download syncs its file and state every syncEvery bytes or syncAfter, whichever
// comes first: a crash loses at most that much of it, never the file's consistency.
const (
	syncEvery = 16 << 20
	syncAfter = time.Second
)

// Fetch makes file hold the whole archive src names, verified against its SHA-256 if
// src has one: it resumes from what an earlier attempt synced (if the source still has
// the same archive), and reports the bytes on disk and the archive's size (-1: not yet
// known) to progress as they grow. One call is one attempt; a caller tries again after
// an error that is not Permanent.
func (f *Fetcher) Fetch(ctx context.Context, src source.Source, file string, progress func(got, total int64)) (Fetched, error) {
	d := loadState(file, src.String())
	res := Fetched{Size: d.Size, From: d.Size}
	if !d.Complete {
		var err error
		if res, err = f.fetch(ctx, src, file, &d, progress); err != nil {
			return res, err
		}
	}
	if err := verify(src, file, d.Size); err != nil {
		if errors.Is(err, ErrMismatch) {
			Discard(file) // the next try downloads it afresh
		}
		return res, err
	}
	return res, nil
}

// fetch downloads what file lacks of the archive and marks d complete.
func (f *Fetcher) fetch(ctx context.Context, src source.Source, file string, d *download, progress func(got, total int64)) (Fetched, error) {
	out, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return Fetched{}, err
	}
	defer out.Close()
	if err := out.Truncate(d.Synced); err != nil { // what was not synced may be anything
		return Fetched{}, err
	}
	from := d.Synced
	if d.Validator == "" || d.Size >= 0 && from >= d.Size {
		from = 0 // nothing to resume with
	}
	// A source that sends nothing for IdleTimeout is given up (the next attempt resumes).
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	idle := cmp.Or(f.IdleTimeout, DefaultIdleTimeout)
	watchdog := time.AfterFunc(idle, func() { cancel(fmt.Errorf("%w: nothing arrived for %s", errIdle, idle)) })
	defer watchdog.Stop()
	body, err := f.open(ctx, src, from, d.Validator)
	if err != nil {
		return Fetched{}, idleCause(ctx, err)
	}
	defer body.Close()
	res := Fetched{From: body.start, Restarted: d.Synced > 0 && body.start == 0}
	if body.start == 0 {
		if err := out.Truncate(0); err != nil {
			return res, err
		}
	}
	d.Validator, d.Size, d.Synced = body.validator, body.size, body.start
	if err := d.save(file); err != nil {
		return res, err
	}
	buf := make([]byte, 1<<20)
	off := body.start
	synced := time.Now()
	for {
		n, rerr := body.Read(buf)
		watchdog.Reset(idle)
		if n > 0 {
			if _, err := out.WriteAt(buf[:n], off); err != nil {
				return res, fmt.Errorf("write %s: %w", file, err)
			}
			off += int64(n)
			res.Got += int64(n)
			if off-d.Synced >= syncEvery || time.Since(synced) >= syncAfter {
				if err := syncState(out, file, d, off); err != nil {
					return res, err
				}
				synced = time.Now()
			}
			if progress != nil {
				progress(off, d.Size)
			}
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			_ = syncState(out, file, d, off) // keep what arrived for the next attempt
			return res, fmt.Errorf("download %s: cut after %d bytes: %w", src, off, idleCause(ctx, rerr))
		}
	}
	if d.Size >= 0 && off != d.Size {
		_ = syncState(out, file, d, off)
		return res, fmt.Errorf("download %s: ended after %d of %d bytes", src, off, d.Size)
	}
	d.Size, d.Complete = off, true
	if err := syncState(out, file, d, off); err != nil {
		return res, err
	}
	res.Size = off
	return res, nil
}

// syncState makes the first synced bytes of the download durable, then says so.
func syncState(out *os.File, file string, d *download, synced int64) error {
	if err := out.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", file, err)
	}
	d.Synced = synced
	return d.save(file)
}

// verify checks a whole archive against src's SHA-256, if it has one.
func verify(src source.Source, file string, size int64) error {
	if src.SHA256 == "" {
		return nil
	}
	in, err := os.Open(file)
	if err != nil {
		return err
	}
	defer in.Close()
	h := sha256.New()
	if _, err := io.Copy(h, in); err != nil {
		return fmt.Errorf("read %s: %w", file, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != src.SHA256 {
		return fmt.Errorf("%w: the archive at %s (%d bytes) has sha256 %s, not the %s the volume was created with",
			ErrMismatch, src, size, got, src.SHA256)
	}
	return nil
}

// body is an archive's content from byte start on, as a source sent it.
type body struct {
	io.ReadCloser
	start, size int64 // size -1: unknown
	validator   string
}

// open asks the source for the archive from byte from on, if it still is the one
// validator names (from 0: all of it). The body may start at 0 anyway.
func (f *Fetcher) open(ctx context.Context, src source.Source, from int64, validator string) (*body, error) {
	if src.URL.Scheme == "s3" {
		return f.openS3(ctx, src, from, validator)
	}
	return f.openHTTP(ctx, src, from, validator)
}
