package transfer

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/cluster/identity"
	"github.com/drayage/drayage/daemon/internal/testpki"
	"github.com/drayage/drayage/daemon/peers"
	"github.com/drayage/drayage/progress"
)

// testIdentities makes a cluster's node identities.
func testIdentities(t testing.TB, names ...string) map[string]*identity.Identity {
	t.Helper()
	ids, err := testpki.Identities(t.TempDir(), names...)
	require.NoError(t, err)
	return ids
}

// serveVolume runs node's sending side for volume "v" at src, letting only "node-b" at
// epoch 2 pull it (another epoch is stale: ErrStaleClaim). It returns the control
// address. Each option is applied to the Server before it serves.
func serveVolume(t testing.TB, id *identity.Identity, src string, opts ...func(*Server)) string {
	t.Helper()
	ctl, _ := serveVolumeLogging(t, id, src, slog.New(slog.DiscardHandler), opts...)
	return ctl
}

// serveVolumeLogging is serveVolume with the sender's log to log; it returns the sender too.
func serveVolumeLogging(t testing.TB, id *identity.Identity, src string, log *slog.Logger, opts ...func(*Server)) (string, *Server) {
	t.Helper()
	data, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	auth := func(_ context.Context, volume, node string, epoch uint64) (string, error) {
		if node != "node-b" || volume != "v" {
			return "", fmt.Errorf("no migration of volume %q to node %q at epoch %d", volume, node, epoch)
		}
		if epoch != 2 {
			return "", fmt.Errorf("no migration of volume %q to node %q at epoch %d: %w", volume, node, epoch, ErrStaleClaim)
		}
		return src, nil
	}
	srv := NewServer(id, auth, data.Addr().String(), log)
	for _, o := range opts {
		o(srv)
	}
	g := peers.NewServer(id, nil, slog.New(slog.DiscardHandler)) // log gets the sender's lines only
	g.Register(srv.ServiceDesc())
	ctl, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = g.Serve(ctl) }()
	go func() { _ = srv.ServeData(data) }()
	t.Cleanup(func() { g.Stop(); _ = srv.Close() })
	return ctl.Addr().String(), srv
}

func TestPullOverTheNetworkThenInstall(t *testing.T) {
	ids := testIdentities(t, "node-a", "node-b", "node-c")
	src := fidelityTree(t)
	ctl := serveVolume(t, ids["node-a"], src)
	base := t.TempDir()
	dest, staging := filepath.Join(base, "data"), filepath.Join(base, "staging")
	require.NoError(t, os.MkdirAll(dest, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dest, "old"), []byte("old tree"), 0o644))

	var reports []progress.Counts
	res, err := Pull(context.Background(), PullOptions{
		Identity: ids["node-b"], From: "node-a", Control: ctl, Volume: "v", Epoch: 2, Staging: staging, Streams: 3,
		Progress: func(p progress.Counts) { reports = append(reports, p) }, Sink: SinkOptions{AllowPrivileged: true},
	})
	require.NoError(t, err)
	assert.Equal(t, 4, res.Files)
	assert.Equal(t, res.Total, res.Bytes+64<<20-8192, "everything but the sparse file's hole crossed the wire")
	require.NotEmpty(t, reports)
	last := reports[len(reports)-1]
	assert.Equal(t, progress.Counts{Bytes: res.Bytes, Total: last.Total, Files: 4, TotalFiles: 4}, last, "the last report is the whole")

	require.NoError(t, Install(staging, dest))
	assert.NoDirExists(t, staging, "the old tree is gone")
	want, err := walkEntries(src)
	require.NoError(t, err)
	got, err := walkEntries(dest)
	require.NoError(t, err)
	assert.Equal(t, want, got)

	// The sender serves only the node and epoch of the migration.
	_, err = Pull(context.Background(), PullOptions{Identity: ids["node-b"], From: "node-a", Control: ctl, Volume: "v", Epoch: 1, Staging: staging})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `node "node-a" refused to send volume "v"`)
	assert.Contains(t, err.Error(), "at epoch 1")

	_, err = Pull(context.Background(), PullOptions{Identity: ids["node-c"], From: "node-a", Control: ctl, Volume: "v", Epoch: 2, Staging: staging})
	require.Error(t, err, "a member with a valid certificate that is not the migration's target is refused")
	assert.Contains(t, err.Error(), `to node "node-c"`)
}

func TestInstallIntoANewPlace(t *testing.T) {
	base := t.TempDir()
	staging := filepath.Join(base, "staging")
	require.NoError(t, os.MkdirAll(staging, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(staging, "f"), []byte("x"), 0o644))
	require.NoError(t, Install(staging, filepath.Join(base, "data")))
	assert.FileExists(t, filepath.Join(base, "data", "f"))
	assert.NoDirExists(t, staging)
	err := Install(filepath.Join(base, "missing"), filepath.Join(base, "data"))
	require.ErrorIs(t, err, os.ErrNotExist)
	assert.FileExists(t, filepath.Join(base, "data", "f"), "a failed install changes nothing")
}

// A sender checks the receiver's claim again for each data stream: once the volume is
// no longer its to send (its lease lapsed and a replica was promoted), it sends no more.
func TestASenderThatLostTheVolumeAfterTheOpenSendsNoStream(t *testing.T) {
	ids := testIdentities(t, "node-a", "node-b")
	src := fidelityTree(t)
	var calls atomic.Int32
	ctl := serveVolume(t, ids["node-a"], src, func(s *Server) {
		s.authorize = func(_ context.Context, volume, node string, epoch uint64) (string, error) {
			if calls.Add(1) > 1 {
				return "", fmt.Errorf("volume %q was promoted on node %q at epoch 3: %w", volume, "node-c", ErrStaleClaim)
			}
			return src, nil
		}
	})
	_, err := Pull(t.Context(), PullOptions{Identity: ids["node-b"], From: "node-a", Control: ctl, Volume: "v", Epoch: 2,
		Staging: filepath.Join(t.TempDir(), "staging"), Streams: 2, Sink: SinkOptions{AllowPrivileged: true}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "was promoted on node")
	assert.Greater(t, calls.Load(), int32(1), "each stream asked")
}
