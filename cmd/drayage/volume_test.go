package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/daemon/control"
	"github.com/drayage/drayage/daemon/volume"
	"github.com/drayage/drayage/daemon/volume/volumetest"
)

// fakeNodes answers moves and copies with fixed results.
type fakeNodes struct {
	move   volume.MoveResult
	copy   volume.CopyResult
	status control.Status
	nodes  []control.NodeInfo
}

func (n fakeNodes) Nodes(context.Context, control.NodesOptions) ([]control.NodeInfo, error) {
	return n.nodes, nil
}
func (n fakeNodes) Status(context.Context) (control.Status, error) { return n.status, nil }
func (n fakeNodes) MoveVolume(context.Context, string, string) (volume.MoveResult, error) {
	return n.move, nil
}
func (n fakeNodes) CopyVolume(context.Context, string, string, string) (volume.CopyResult, error) {
	return n.copy, nil
}
func (n fakeNodes) PromoteVolume(context.Context, string, string, bool) (volume.PromoteResult, error) {
	return volume.PromoteResult{}, nil
}

// serveControl serves a control API over a node's manager in root.
func serveControl(t *testing.T, root string, nodes control.Nodes) *volumetest.Node {
	node := volumetest.Start(t, "node-a")
	l, err := net.Listen("unix", filepath.Join(root, control.SocketName))
	require.NoError(t, err)
	srv := control.NewServer(node.Manager, nodes, slog.New(slog.DiscardHandler))
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	return node
}

// run runs the drayage command line against the daemon in root.
func run(t *testing.T, root string, args ...string) (string, error) {
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(append([]string{"--root", root}, args...))
	err := cmd.Execute()
	return out.String(), err
}

func TestMoveWithJSONPrintsOnlyTheResult(t *testing.T) {
	root := t.TempDir()
	want := volume.MoveResult{Volume: "db", From: "node-a", To: "node-b", Bytes: 4096, Took: time.Second}
	serveControl(t, root, fakeNodes{move: want})
	out, err := run(t, root, "volume", "move", "db", "--to", "node-b", "--json")
	require.NoError(t, err)
	var got volume.MoveResult
	require.NoError(t, json.Unmarshal([]byte(out), &got), out)
	assert.Equal(t, want, got)

	out, err = run(t, root, "volume", "move", "db", "--to", "node-b")
	require.NoError(t, err)
	assert.Equal(t, "moved volume db from node node-a to node node-b: 4KiB in 1s\n", out)
}

func TestRmRemovesEachVolumeAndFailsForThoseItCannot(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	node := serveControl(t, root, fakeNodes{})
	for _, name := range []string{"a", "b", "busy"} {
		require.NoError(t, node.Manager.Create(ctx, name, nil))
	}
	_, err := node.Manager.Mount(ctx, "busy", "c1")
	require.NoError(t, err)

	out, err := run(t, root, "volume", "rm", "a", "nope", "busy", "b")
	require.Error(t, err)
	assert.Contains(t, out, "a\nb\n")
	assert.Contains(t, err.Error(), `volume "nope": no such volume in the cluster; see 'drayage volume ls'`)
	assert.Contains(t, err.Error(), `volume "busy" is mounted by 1 container on node "node-a"`)
	list, err := node.Manager.List(ctx)
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.Equal(t, "busy", list[0].Name)

	out, err = run(t, root, "volume", "remove", "--json", "busy", "nope")
	require.Error(t, err)
	assert.JSONEq(t, `[]`, out)
}

func TestCopyPrintsWhatItMadeAndWithJSONOnlyTheResult(t *testing.T) {
	root := t.TempDir()
	want := volume.CopyResult{Volume: "db", Copy: "db2", From: "node-a", To: "node-b", Bytes: 2 << 20, Took: 1500 * time.Millisecond}
	serveControl(t, root, fakeNodes{copy: want})
	out, err := run(t, root, "volume", "copy", "db", "db2", "--to", "node-b", "--json")
	require.NoError(t, err)
	var got volume.CopyResult
	require.NoError(t, json.Unmarshal([]byte(out), &got), out)
	assert.Equal(t, want, got)

	out, err = run(t, root, "volume", "copy", "db", "db2", "--to", "node-b")
	require.NoError(t, err)
	assert.Equal(t, "copied volume db on node node-a to volume db2 on node node-b: 2MiB in 1.5s\n", out)

	_, err = run(t, root, "volume", "copy", "db", "db2")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "--to NODE")
}

func (fakeNodes) StoreMembers(context.Context) ([]control.StoreMember, error) { return nil, nil }

func (fakeNodes) RemoveStoreMember(context.Context, string, bool) (control.StoreMember, error) {
	return control.StoreMember{}, nil
}

func (fakeNodes) StoreSnapshot(context.Context) (control.SnapshotResult, error) {
	return control.SnapshotResult{}, nil
}
