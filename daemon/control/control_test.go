package control

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/daemon/volume"
	"github.com/drayage/drayage/daemon/volume/volumetest"
	"github.com/drayage/drayage/progress"
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

func TestClientSaysWhatToDoWhenTheDaemonStopsMidRequest(t *testing.T) {
	root := t.TempDir()
	l, err := net.Listen("unix", filepath.Join(root, SocketName))
	require.NoError(t, err)
	defer l.Close()
	go func() {
		// A daemon killed while it works: it reads the request and dies without answering.
		conn, err := l.Accept()
		if err == nil {
			_, _ = conn.Read(make([]byte, 4096))
			_ = conn.Close()
		}
	}()
	_, err = NewClient(root).MoveVolume(context.Background(), "db", "node-b")
	require.ErrorIs(t, err, ErrDaemonUnreachable)
	assert.Contains(t, err.Error(), "it stopped while working on the request")
	assert.Contains(t, err.Error(), "run the command again")
}

type noNodes struct{}

// Nodes lists node-a, and node-b only if asked to check who answers.
func (noNodes) Nodes(_ context.Context, o NodesOptions) ([]NodeInfo, error) {
	if o.Reach {
		return []NodeInfo{{Name: "node-a"}, {Name: "node-b", Reach: "ok"}}, nil
	}
	return []NodeInfo{{Name: "node-a"}}, nil
}

// fakeStatus is what noNodes reports as the node's status.
var fakeStatus = Status{
	Node:    NodeStatus{Name: "node-a", Version: "1.2.3", Gossip: "10.0.0.1:7790", Root: "/var/lib/drayage", Started: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), UptimeSeconds: 3600},
	Store:   StoreStatus{Kind: "etcd", Endpoints: []string{"10.0.0.9:2379"}, Prefix: "drayage/", OK: true, LatencyMS: 1.5},
	Members: []NodeInfo{{Name: "node-a", State: "alive", Self: true}, {Name: "node-b", State: "dead"}},
	Volumes: VolumeCounts{Total: 3, ByState: map[string]int{"idle": 2, "mounted": 1}},
	Transfers: []TransferStatus{{Direction: DirectionOut, Peer: "node-b", ID: "ab12",
		Transfer: progress.Transfer{Volume: "db", Kind: "move", From: "node-a", To: "node-b", Counts: progress.Counts{Bytes: 41, Total: 100},
			Started: time.Date(2025, 1, 2, 4, 0, 0, 0, time.UTC), Updated: time.Date(2025, 1, 2, 4, 0, 1, 0, time.UTC)}}},
}

func (noNodes) Status(context.Context) (Status, error) { return fakeStatus, nil }

func (noNodes) MoveVolume(context.Context, string, string) (volume.MoveResult, error) {
	return volume.MoveResult{}, nil
}

// CopyVolume echoes the request, and refuses the name "taken".
func (noNodes) CopyVolume(_ context.Context, name, newName, to string) (volume.CopyResult, error) {
	if newName == "taken" {
		return volume.CopyResult{}, fmt.Errorf("volume %q: %w", newName, volume.ErrExists)
	}
	return volume.CopyResult{Volume: name, Copy: newName, To: to}, nil
}

// PromoteVolume echoes the request, and refuses without accept_loss.
func (noNodes) PromoteVolume(_ context.Context, name, to string, acceptLoss bool) (volume.PromoteResult, error) {
	if !acceptLoss {
		return volume.PromoteResult{}, fmt.Errorf("volume %q: behind: %w", name, volume.ErrReplicaBehind)
	}
	return volume.PromoteResult{Volume: name, To: to, Epoch: 2}, nil
}

func TestPromoteRequestReachesTheNodesAndItsRefusalComesBack(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	serve(t, volumetest.Start(t, "node-a").Manager, root)
	c := NewClient(root)
	_, err := c.PromoteVolume(ctx, "db", "node-b", false)
	require.ErrorIs(t, err, volume.ErrReplicaBehind)
	res, err := c.PromoteVolume(ctx, "db", "node-b", true)
	require.NoError(t, err)
	assert.Equal(t, volume.PromoteResult{Volume: "db", To: "node-b", Epoch: 2}, res)
}

func TestCopyRequestReachesTheNodesAndItsRefusalComesBack(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	serve(t, volumetest.Start(t, "node-a").Manager, root)
	c := NewClient(root)
	res, err := c.CopyVolume(ctx, "db", "db2", "node-b")
	require.NoError(t, err)
	assert.Equal(t, volume.CopyResult{Volume: "db", Copy: "db2", To: "node-b"}, res)
	_, err = c.CopyVolume(ctx, "db", "taken", "node-b")
	require.ErrorIs(t, err, volume.ErrExists)
	assert.Equal(t, `volume "taken": volume exists`, err.Error())
}

func TestLookupDoesNotMeasureTheVolume(t *testing.T) {
	ctx := context.Background()
	node := volumetest.Start(t, "node-a")
	require.NoError(t, node.Manager.Create(ctx, "v1", nil))
	require.NoError(t, os.WriteFile(filepath.Join(node.Root, "volumes", "v1", "data", "f"), make([]byte, 100), 0o644))
	root := t.TempDir()
	serve(t, node.Manager, root)
	c := NewClient(root)

	info, err := c.LookupVolume(ctx, "v1")
	require.NoError(t, err)
	assert.Equal(t, int64(0), info.Size, "not measured: the size recorded at its creation")
	assert.Nil(t, info.Progress)
	info, err = c.InspectVolume(ctx, "v1")
	require.NoError(t, err)
	assert.Equal(t, int64(100), info.Size)
	_, err = c.LookupVolume(ctx, "nope")
	require.ErrorIs(t, err, volume.ErrNotFound)
}

func TestRemoveThroughTheSocketKeepsTheSentinels(t *testing.T) {
	ctx := context.Background()
	node := volumetest.Start(t, "node-a")
	require.NoError(t, node.Manager.Create(ctx, "v1", nil))
	root := t.TempDir()
	serve(t, node.Manager, root)
	c := NewClient(root)

	_, err := node.Manager.Mount(ctx, "v1", "c1")
	require.NoError(t, err)
	_, err = c.RemoveVolume(ctx, "v1", volume.DeleteOptions{})
	require.ErrorIs(t, err, volume.ErrInUse)
	assert.Contains(t, err.Error(), `volume "v1" is mounted by 1 container on node "node-a"`)
	require.NoError(t, node.Manager.Unmount(ctx, "v1", "c1"))

	res, err := c.RemoveVolume(ctx, "v1", volume.DeleteOptions{})
	require.NoError(t, err)
	assert.Equal(t, volume.RemoveResult{Volume: "v1", Node: "node-a"}, res)
	assert.NoDirExists(t, filepath.Join(node.Root, "volumes", "v1"))
	_, err = c.RemoveVolume(ctx, "v1", volume.DeleteOptions{})
	require.ErrorIs(t, err, volume.ErrNotFound)
}

func TestStatusComesThroughTheSocketWhole(t *testing.T) {
	root := t.TempDir()
	serve(t, volumetest.Start(t, "node-a").Manager, root)
	s, err := NewClient(root).Status(context.Background())
	require.NoError(t, err)
	assert.Equal(t, fakeStatus, s)
}

func TestRosterSkipsTheReachCheck(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	serve(t, volumetest.Start(t, "node-a").Manager, root)
	c := NewClient(root)
	all, err := c.ListNodes(ctx)
	require.NoError(t, err)
	assert.Len(t, all, 2)
	roster, err := c.Roster(ctx)
	require.NoError(t, err)
	assert.Equal(t, []NodeInfo{{Name: "node-a"}}, roster)
}

func (noNodes) StoreMembers(context.Context) ([]StoreMember, error) { return nil, nil }

func (noNodes) RemoveStoreMember(context.Context, string, bool) (StoreMember, error) {
	return StoreMember{}, nil
}

func (noNodes) StoreSnapshot(context.Context) (SnapshotResult, error) { return SnapshotResult{}, nil }
