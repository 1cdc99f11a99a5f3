package daemon

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/daemon/seed/seedtest"
	"github.com/drayage/drayage/daemon/volume"
)

// tarGz is a .tar.gz of files, name to content.
func tarGz(t *testing.T, files ...string) []byte {
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	for i := 0; i < len(files); i += 2 {
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: files[i], Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(files[i+1])), ModTime: time.Unix(1_700_000_000, 0)}))
		_, err := tw.Write([]byte(files[i+1]))
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	var gb bytes.Buffer
	gw := gzip.NewWriter(&gb)
	_, err := gw.Write(tb.Bytes())
	require.NoError(t, err)
	require.NoError(t, gw.Close())
	return gb.Bytes()
}

// The daemon's seeder, over a real HTTPS server it trusts through DRAYAGE_SEED_CA (a file
// in the TLS dir): it fills staging from an archive, and tells a failure no retry cures
// (volume.ErrSeedRefused) from one that may pass.
func TestTheSeederFillsStagingAndSaysWhatIsForGood(t *testing.T) {
	cert, err := seedtest.NewCert("127.0.0.1")
	require.NoError(t, err)
	srv, err := seedtest.Start("127.0.0.1:0", cert)
	require.NoError(t, err)
	defer srv.Close()
	tlsDir, state := t.TempDir(), t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(tlsDir, "seed-ca.pem"), cert.CA, 0o600))
	s, err := newSeeder(Config{Name: "node-a", TLSDir: tlsDir, SeedCA: "seed-ca.pem"}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	defer s.fetch.HTTP.CloseIdleConnections()

	good := tarGz(t, "index.html", "<h1>hi</h1>\n")
	sum := sha256.Sum256(good)
	srv.Put("/good.tar.gz", good)
	srv.Put("/hostile.tar.gz", tarGz(t, "../escape", "evil"))
	req := func(name, path, sha string) volume.SeedRequest {
		return volume.SeedRequest{Volume: name, From: srv.URL + path, SHA256: sha,
			Staging: filepath.Join(state, "staging", name), Download: filepath.Join(state, name+".download")}
	}
	require.NoError(t, os.MkdirAll(filepath.Join(state, "staging"), 0o700))
	ctx := context.Background()

	got, err := s.Seed(ctx, req("web", "/good.tar.gz", hex.EncodeToString(sum[:])))
	require.NoError(t, err)
	b, err := os.ReadFile(filepath.Join(state, "staging", "web", "index.html"))
	require.NoError(t, err)
	assert.Equal(t, "<h1>hi</h1>\n", string(b))
	assert.Equal(t, int64(12), got.Size)
	assert.Len(t, got.Root, 64)

	for name, tc := range map[string]struct {
		path, sha, why string
		refused        bool
	}{
		"wrong sha256": {"/good.tar.gz", hex.EncodeToString(make([]byte, 32)), "sha256 mismatch", true},
		"hostile":      {"/hostile.tar.gz", "", `archive entry "../escape"`, true},
		"missing":      {"/missing.tar.gz", "", "404 Not Found", true},
	} {
		_, err := s.Seed(ctx, req(name, tc.path, tc.sha))
		require.Error(t, err, name)
		assert.Equal(t, tc.refused, errors.Is(err, volume.ErrSeedRefused), "%s: %v", name, err)
		assert.Contains(t, err.Error(), tc.why, name)
		assert.Contains(t, err.Error(), `volume "`+name+`" on node "node-a"`, name)
	}

	srv.Close() // a server that is down: worth another try
	_, err = s.Seed(ctx, req("down", "/good.tar.gz", ""))
	require.Error(t, err)
	assert.NotErrorIs(t, err, volume.ErrSeedRefused)
}

func TestASeederWithAnUnreadableSettingSaysWhich(t *testing.T) {
	_, err := newSeeder(Config{Name: "node-a", TLSDir: t.TempDir(), SeedCA: "missing.pem"}, slog.New(slog.DiscardHandler))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "DRAYAGE_SEED_CA")
	_, err = newSeeder(Config{Name: "node-a", TLSDir: t.TempDir(), S3AccessKey: "AKID"}, slog.New(slog.DiscardHandler))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "DRAYAGE_S3_SECRET_KEY_FILE")
}
