package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/drayage/drayage/daemon/backup"
	"github.com/drayage/drayage/daemon/seed"
	"github.com/drayage/drayage/daemon/seed/source"
	"github.com/drayage/drayage/daemon/transfer"
	"github.com/drayage/drayage/daemon/volume"
	"github.com/drayage/drayage/progress"
)

// seedMaxEntries bounds the entries of an archive a volume is filled from: its manifest
// is held in memory while it unpacks (about 200 bytes an entry).
const seedMaxEntries = 2_000_000

// seeder fills volumes from their sources for the volume manager: the archive
// downloads with package seed, and unpacks with transfer.Unpack, under every rule a
// pull from another node has.
type seeder struct {
	fetch *seed.Fetcher
	node  string
	log   *slog.Logger
}

// newSeeder makes the seeder from the daemon's settings: the CAs for https sources and
// the S3 credentials, read once (a secret key file's content never reaches a log).
func newSeeder(cfg Config, log *slog.Logger) (*seeder, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if cfg.SeedCA != "" {
		pem, err := os.ReadFile(inTLSDir(cfg, cfg.SeedCA))
		if err != nil {
			return nil, fmt.Errorf("node %q: --seed-ca (DRAYAGE_SEED_CA): %w", cfg.Name, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("node %q: --seed-ca (DRAYAGE_SEED_CA) %s holds no PEM certificate", cfg.Name, cfg.SeedCA)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	s3 := seed.S3Config{Endpoint: cfg.S3Endpoint, Region: cfg.S3Region, AccessKey: cfg.S3AccessKey}
	if f := cfg.S3SecretKeyFile; f != "" {
		b, err := os.ReadFile(inTLSDir(cfg, f))
		if err != nil {
			return nil, fmt.Errorf("node %q: --s3-secret-key-file (DRAYAGE_S3_SECRET_KEY_FILE): %w", cfg.Name, err)
		}
		s3.SecretKey = strings.TrimSpace(string(b))
	}
	if s3.AccessKey != "" && s3.SecretKey == "" {
		return nil, fmt.Errorf("node %q: --s3-access-key (DRAYAGE_S3_ACCESS_KEY) is set but no secret key: put it in a file in the TLS dir and name it with DRAYAGE_S3_SECRET_KEY_FILE", cfg.Name)
	}
	return &seeder{fetch: &seed.Fetcher{HTTP: &http.Client{Transport: tr}, S3: s3}, node: cfg.Name, log: log}, nil
}

// inTLSDir is file, in the TLS dir unless it is an absolute path.
func inTLSDir(cfg Config, file string) string {
	if filepath.IsAbs(file) {
		return file
	}
	return filepath.Join(cfg.TLSDir, file)
}

// Seed downloads the volume's archive (resuming) and unpacks it into staging.
func (s *seeder) Seed(ctx context.Context, r volume.SeedRequest) (volume.Pulled, error) {
	src, err := source.Parse(r.From, r.SHA256)
	if err != nil {
		return volume.Pulled{}, s.refused(r, err)
	}
	report := func(c progress.Counts) {
		if r.Progress != nil {
			r.Progress(c)
		}
	}
	if src.Backup {
		return s.restore(ctx, r, src, report)
	}
	start := time.Now()
	got, err := s.fetch.Fetch(ctx, src, r.Download, func(n, total int64) { report(progress.Counts{Bytes: n, Total: max(total, n)}) })
	if err != nil {
		if seed.Permanent(err) {
			return volume.Pulled{}, s.refused(r, err)
		}
		return volume.Pulled{}, fmt.Errorf("volume %q on node %q: %w", r.Volume, s.node, err)
	}
	s.log.Info("downloaded the archive of a volume", "volume", r.Volume, "from", src.String(), "bytes", got.Size,
		"resumed_at", got.From, "downloaded", got.Got, "restarted", got.Restarted, "took", time.Since(start).Round(time.Millisecond))
	open, err := seed.Open(r.Download)
	if err != nil {
		return volume.Pulled{}, s.refused(r, err)
	}
	start = time.Now()
	res, err := transfer.Unpack(ctx, r.Staging, open, transfer.UnpackOptions{Sink: transfer.SinkOptions{AllowPrivileged: r.AllowPrivileged}, MaxEntries: seedMaxEntries})
	if err != nil {
		if errors.Is(err, transfer.ErrHostile) || errors.Is(err, transfer.ErrArchive) || errors.Is(err, transfer.ErrTooBig) {
			return volume.Pulled{}, s.refused(r, err)
		}
		return volume.Pulled{}, fmt.Errorf("volume %q on node %q: unpack the archive from %s: %w", r.Volume, s.node, src, err)
	}
	s.stripped(r, src, res.Stripped)
	s.log.Info("unpacked the archive of a volume", "volume", r.Volume, "entries", res.Entries, "files", res.Files,
		"bytes", res.Total, "written", res.Written, "took", time.Since(start).Round(time.Millisecond))
	report(progress.Counts{Bytes: got.Size, Total: got.Size, Files: res.Files, TotalFiles: res.Files})
	return volume.Pulled{Size: res.Total, Root: hex.EncodeToString(res.RootHash[:]), Sent: got.Got}, nil
}

// restore fills staging with a snapshot of a drayage backup, each chunk checked, the
// tree checked against the snapshot's root hash.
func (s *seeder) restore(ctx context.Context, r volume.SeedRequest, src source.Source, report func(progress.Counts)) (volume.Pulled, error) {
	c, err := s.fetch.S3Client()
	if err != nil {
		return volume.Pulled{}, s.refused(r, err)
	}
	repo := backup.Open(c, backup.Location{Bucket: src.Bucket, Prefix: src.Key})
	start := time.Now()
	info, snap, err := repo.Load(ctx, src.Snapshot)
	if err != nil {
		return volume.Pulled{}, s.restoreFailed(r, err)
	}
	res, err := transfer.Restore(ctx, r.Staging, snap, repo, transfer.RestoreOptions{
		Sink:     transfer.SinkOptions{AllowPrivileged: r.AllowPrivileged},
		Progress: func(done, total int64) { report(progress.Counts{Bytes: done, Total: total}) },
	})
	if err != nil {
		err = fmt.Errorf("restore snapshot %s of %s: %w", info.ID, src, err)
		if src.Snapshot == "" && errors.Is(err, backup.ErrNotFound) && !repo.Exists(ctx, info.ID) {
			// The latest snapshot was pruned as it was read: the next try takes the new latest.
			return volume.Pulled{}, fmt.Errorf("volume %q on node %q: %w", r.Volume, s.node, err)
		}
		return volume.Pulled{}, s.restoreFailed(r, err)
	}
	s.stripped(r, src, res.Stripped)
	s.log.Info("restored a volume from a backup", "volume", r.Volume, "from", src.String(), "snapshot", info.ID, "root", info.Root,
		"entries", res.Entries, "files", res.Files, "bytes", res.Total, "written", res.Written, "took", time.Since(start).Round(time.Millisecond))
	report(progress.Counts{Bytes: res.Written, Total: res.Written, Files: res.Files, TotalFiles: res.Files})
	return volume.Pulled{Size: res.Total, Root: hex.EncodeToString(res.RootHash[:]), Sent: res.Written}, nil
}

// restoreFailed is err, marked as refused if trying again can't cure it: no such
// snapshot or chunk, S3 refusing, or content that is not the snapshot's.
func (s *seeder) restoreFailed(r volume.SeedRequest, err error) error {
	for _, permanent := range []error{backup.ErrNotFound, backup.ErrRefused, transfer.ErrHostile, transfer.ErrCorrupt, transfer.ErrRootMismatch} {
		if errors.Is(err, permanent) {
			return s.refused(r, err)
		}
	}
	return fmt.Errorf("volume %q on node %q: %w", r.Volume, s.node, err)
}

// stripped warns that privileged content was left out of a volume that does not allow it.
func (s *seeder) stripped(r volume.SeedRequest, src source.Source, st transfer.Stripped) {
	if st.Count > 0 {
		s.log.Warn("stripped privileged content from the source of a volume created without allow-privileged: setuid/setgid bits, file capabilities and trusted.* attributes are not kept; create the volume with -o allow-privileged=true to keep them",
			"volume", r.Volume, "from", src.String(), "files", st.Count, "e.g.", strings.Join(st.Paths, ","))
	}
}

// refused marks a failure that no retry cures, naming the volume, the node and the source.
func (s *seeder) refused(r volume.SeedRequest, err error) error {
	return fmt.Errorf("volume %q on node %q: %w: %w", r.Volume, s.node, volume.ErrSeedRefused, err)
}
