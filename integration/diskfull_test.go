package integration

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A container stops while its node's state dir is full. The engine asks once: the
// plugin records the unmount in the room its reserve keeps, and the volume is idle at
// once. With the reserve used up as well, the unmount fails, and is recorded once the
// disk has room: the volume is idle, its claim released, and it moves. (Found by the
// fault campaign: the volume stayed "mounted on node-a by 1 container" for good, and a
// daemon restart meanwhile restored the mount from the record.)
func TestAnUnmountOnAFullDiskIsRecorded(t *testing.T) {
	nodes, _ := startNodesWith(t, etcdStore, []string{"node-a", "node-b"}, smallDisk)
	a, b := nodes[0], nodes[1]
	a.docker("volume", "create", "--driver", nodePlugin, "full")
	mount := "type=volume,source=full,target=/data,volume-driver=" + nodePlugin
	start := func() string {
		id := a.docker("run", "-d", "--network", "none", "--mount", mount, testImage, "sh", "-c", "echo kept > /data/f; sleep 3600")
		eventually(t, timeout, "the container's write", func() bool { return treeOf(t, dataDir(a, "full"))["f"] != "" })
		return id
	}

	id := start()
	fillDisk(t, a)
	a.docker("rm", "-f", id)
	info := inspect(t, a.state, "full")
	assert.Equal(t, 0, info.Mounts, "recorded in the reserve's room")
	assert.FileExists(t, filepath.Join(a.state, "reserve"), "made again: the new record took the old one's room")
	freeDisk(t, a)

	id = start()
	require.NoError(t, os.Remove(filepath.Join(a.state, "reserve")))
	fillDisk(t, a)
	a.docker("rm", "-f", id)
	info = inspect(t, a.state, "full")
	require.Equal(t, 1, info.Mounts, "the unmount could not be recorded on a full disk without a reserve")
	assert.Contains(t, a.log(), "record the unmount")

	freeDisk(t, a)
	eventually(t, timeout, "the unmount recorded once the disk has room", func() bool {
		info := inspect(t, a.state, "full")
		return info.Mounts == 0 && info.State == "idle" && info.Claim == nil
	})
	assert.Equal(t, "kept", b.run("--mount", mount, testImage, "cat", "/data/f"), "and the volume moves")
}

// A node's plugin restarts while its state dir is full (the embedded store member ends
// the daemon when a write finds the disk full; the engine starts it again). A daemon
// that died again at start, before its socket answered, was disabled by the engine for
// good: the node stayed out of the cluster after the disk had room (found by the fault
// campaign: seed 14, a disk-full round). It waits for room now, answering "starting",
// and joins once the disk is freed.
func TestADaemonStartedOnAFullDiskWaitsForRoom(t *testing.T) {
	nodes, _ := startNodesWith(t, embeddedStore, []string{"node-a", "node-b", "node-c"}, smallDisk)
	a, c := nodes[0], nodes[2]
	fillDisk(t, c)
	pid := c.pluginPID()
	require.NotZero(t, pid)
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	// The engine gives a restarted plugin about 12 s to answer on its socket.
	time.Sleep(20 * time.Second)
	assert.Equal(t, "true", c.docker("plugin", "inspect", "-f", "{{.Enabled}}", nodePlugin), "the plugin stays enabled")
	assert.NotZero(t, c.pluginPID(), "its daemon runs")
	assert.True(t, strings.Contains(c.log(), "waits for room under the state dir"), "the daemon says why it waits")

	freeDisk(t, c)
	eventually(t, timeout, "node-c back in the cluster once its disk has room", func() bool {
		seen, err := tryNodeList(a.state)
		return err == nil && seen["node-c"].Reach == "ok"
	})
}
