package integration

import (
	"os"
	"path/filepath"
	"testing"

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
