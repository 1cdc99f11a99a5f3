// Package volumetest builds volume managers for tests of the layers above (the plugin,
// the control API): a real manager over a real embedded cluster store, with fake mounts.
package volumetest

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/cluster/clustertest"
	"github.com/drayage/drayage/daemon/mount/mounttest"
	"github.com/drayage/drayage/daemon/volume"
)

// Node is one test node.
type Node struct {
	Manager *volume.Manager
	Mounter *mounttest.Fake
	// Root is the node's state dir.
	Root string
	init func()
}

// New makes a manager for node that is not initialised yet: it answers "starting"
// until Init.
func New(t *testing.T, node string) *Node {
	t.Helper()
	dir := t.TempDir()
	n := &Node{Mounter: mounttest.New(), Root: filepath.Join(dir, "state")}
	n.Manager = volume.NewManager(volume.Config{
		Node: node, Root: n.Root, MountDir: filepath.Join(dir, "mnt"), Mounter: n.Mounter,
		Logger: slog.New(slog.DiscardHandler),
	})
	t.Cleanup(n.Manager.Close)
	reg := clustertest.Registry(t)
	n.init = func() { require.NoError(t, n.Manager.Init(context.Background(), reg, clustertest.Lease(t))) }
	return n
}

// Init initialises the manager, as a daemon start does.
func (n *Node) Init() { n.init() }

// Start makes and initialises a manager for node.
func Start(t *testing.T, node string) *Node {
	t.Helper()
	n := New(t, node)
	n.Init()
	return n
}
