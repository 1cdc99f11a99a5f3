package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// deadMountWait outlasts the daemon's grace for a mount restored at start that no
// container uses (daemon/volume/deadmounts.go: 20 s, checked every 5 s).
const deadMountWait = 35 * time.Second

// A node crashed with a container running on a volume: the engine, back, never unmounts
// the volume of the container that died with it, and the daemon restored the mount from
// its record. The daemon sees that no container uses the mount and releases it: the
// volume moves on. Before that, restarts of the plugin alone (killed, or disabled and
// enabled) while the container runs must keep the mount: releasing it would let another
// node take the volume while the container writes. (Found by the fault campaign, seed
// 605990: the volume stayed mounted on the crashed node for good.)
func TestANodeCrashReleasesTheVolumesOfTheContainersThatDiedWithIt(t *testing.T) {
	nodes := startNodes(t, etcdStore, []string{"node-a", "node-b"})
	a, b := nodes[0], nodes[1]
	a.docker("volume", "create", "--driver", nodePlugin, "held")
	mount := "type=volume,source=held,target=/data,volume-driver=" + nodePlugin
	a.docker("run", "-d", "--network", "none", "--mount", mount, testImage, "sh", "-c", "echo before > /data/f; exec sleep 3600")
	eventually(t, timeout, "the container to write", func() bool {
		out, err := tryRun(binary, "--root", a.state, "volume", "inspect", "held")
		return err == nil && strings.Contains(out, "mounted")
	})

	refused := func(what string) {
		t.Helper()
		out := b.runFails("--mount", mount, testImage, "cat", "/data/f")
		assert.Contains(t, out, "node-a", "%s: a container on node-b is refused while node-a's runs", what)
		assert.Equal(t, "mounted", inspect(t, a.state, "held").State, what)
	}
	a.killPlugin()
	time.Sleep(deadMountWait)
	refused("after the plugin was killed")

	a.docker("plugin", "disable", "-f", nodePlugin)
	a.docker("plugin", "enable", nodePlugin)
	time.Sleep(deadMountWait)
	refused("after the plugin was disabled and enabled")
	assert.Equal(t, "before", a.docker("exec", containerOn(a), "cat", "/data/f"), "the container still has its volume")

	a.crash()
	a.restart()
	eventually(t, timeout, "the volume of the container that died with node-a to move to node-b", func() bool {
		out, err := tryRun("docker", "-H", b.engine.host, "run", "--rm", "--network", "none", "--mount", mount, testImage, "cat", "/data/f")
		return err == nil && strings.TrimSpace(out) == "before"
	})
	assert.True(t, strings.Contains(a.log(), "releasing them, the volume is free to move"), "the daemon says it released the mount")
}

// containerOn returns the ID of the one running container on node n.
func containerOn(n *node) string {
	return strings.TrimSpace(n.docker("ps", "-q"))
}
