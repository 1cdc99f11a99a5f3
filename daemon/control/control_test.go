package control

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/daemon/volume"
	"github.com/drayage/drayage/daemon/volume/volumetest"
)

func serve(t *testing.T, vols Volumes, root string) {
	l, err := net.Listen("unix", filepath.Join(root, SocketName))
	require.NoError(t, err)
	srv := NewServer(vols, noNodes{}, slog.New(slog.DiscardHandler))
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
}

func TestClientListsAndInspectsThroughTheSocket(t *testing.T) {
	ctx := context.Background()
	node := volumetest.Start(t, "node-a")
	require.NoError(t, node.Manager.Create(ctx, "v1", map[string]string{"uid": "5"}))
	root := t.TempDir()
	serve(t, node.Manager, root)
	c := NewClient(root)

	list, err := c.ListVolumes(ctx)
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.Equal(t, "v1", list[0].Name)

	info, err := c.InspectVolume(ctx, "v1")
	require.NoError(t, err)
	assert.Equal(t, "node-a", info.Node)
	assert.Equal(t, int64(0), info.Size)
	assert.Equal(t, map[string]string{"uid": "5"}, info.Options)

	_, err = c.InspectVolume(ctx, "nope")
	require.ErrorIs(t, err, volume.ErrNotFound, "the sentinel survives the trip")
	assert.Contains(t, err.Error(), `volume "nope" on node "node-a"`)

	_, err = c.InspectVolume(ctx, "../x")
	require.ErrorIs(t, err, volume.ErrInvalidName)
}

func TestClientSaysWhatToDoWhenNoDaemonAnswers(t *testing.T) {
	root := t.TempDir()
	_, err := NewClient(root).ListVolumes(context.Background())
	require.ErrorIs(t, err, ErrDaemonUnreachable)
	assert.Contains(t, err.Error(), filepath.Join(root, SocketName))
	assert.Contains(t, err.Error(), "DRAYAGE_ROOT")
}

type noNodes struct{}

func (noNodes) Nodes(context.Context) ([]NodeInfo, error) { return nil, nil }

func (noNodes) MoveVolume(context.Context, string, string) (volume.MoveResult, error) {
	return volume.MoveResult{}, nil
}
