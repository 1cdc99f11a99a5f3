package integration

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/cluster/storetest"
)

// The product's core path on real engines: a volume written on one node appears in a
// container started on another.
func TestVolumeFollowsItsContainerToAnotherEngine(t *testing.T) {
	etcd := storetest.StartEtcd(t, storetest.ServerOptions{})
	base := t.TempDir()
	pki := filepath.Join(base, "pki")
	run(t, binary, "tls", "init", "--dir", pki, "--nodes", "node-a,node-b", "--ip", "node-a=127.0.0.1,node-b=127.0.0.1")
	ea, eb := startEngine(t), startEngine(t)
	a := startNetNodeOn(t, ea, "node-a", base, filepath.Join(pki, "node-a"), etcd.URL, 0, "it")
	b := startNetNodeOn(t, eb, "node-b", base, filepath.Join(pki, "node-b"), etcd.URL, a.gossip, "it")
	eventually(t, timeout, "the two nodes to see each other", func() bool {
		return nodeList(t, a.root)["node-b"].Reach == "ok" && nodeList(t, b.root)["node-a"].Reach == "ok"
	})
	runOn := func(e *engine, args ...string) string {
		return e.docker(t, append([]string{"run", "--rm", "--network", "none"}, args...)...)
	}

	ea.docker(t, "volume", "create", "--driver", "drayage", "-o", "uid=1000", "appdata")
	runOn(ea, "-v", "appdata:/data", testImage, "sh", "-c",
		"echo written-on-a > /data/note && mkdir /data/sub && ln -s note /data/sub/link && chown 1234:5678 /data/note && chmod 640 /data/note")

	start := time.Now()
	out := runOn(eb, "-v", "appdata:/data", testImage, "sh", "-c", "cat /data/note; stat -c '%u:%g %a' /data/note; readlink /data/sub/link")
	t.Logf("container on node-b started with the volume pulled from node-a in %s", time.Since(start).Round(10*time.Millisecond))
	assert.Equal(t, "written-on-a\n1234:5678 640\nnote", out, "every byte, owner and mode arrived")

	info := inspect(t, a.root, "appdata")
	assert.Equal(t, "node-b", info.Node, "node-b owns it now")
	assert.Equal(t, uint64(2), info.Epoch)
	eventually(t, timeout, "node-a to drop its old copy", func() bool {
		_, err := os.Stat(filepath.Join(a.root, "volumes", "appdata"))
		return os.IsNotExist(err)
	})

	// In use on node-b: node-a's Mount fails at once, saying where and what to do.
	id := eb.docker(t, "run", "-d", "--network", "none", "-v", "appdata:/data", testImage, "sleep", "3600")
	out = mustFail(t, "docker", "-H", ea.host, "run", "--rm", "--network", "none", "-v", "appdata:/data", testImage, "true")
	assert.Contains(t, out, `volume "appdata" is mounted on node "node-b" by 1 container; stop it there or use 'drayage volume move appdata --to node-a'`)
	eb.docker(t, "rm", "-f", id)

	// node-b dies: a Mount on node-a fails fast, naming the node and when it was seen.
	b.kill(syscall.SIGKILL)
	eventually(t, timeout, "node-a to see node-b dead", func() bool { return nodeList(t, a.root)["node-b"].State == "dead" })
	start = time.Now()
	out = mustFail(t, "docker", "-H", ea.host, "run", "--rm", "--network", "none", "-v", "appdata:/data", testImage, "true")
	assert.Contains(t, out, `held by node "node-b", which is down (last seen`)
	assert.Less(t, time.Since(start), 10*time.Second, "a clear error within seconds, not the engine's deadline")
	t.Logf("Mount with the owner down failed in %s", time.Since(start).Round(10*time.Millisecond))

	// It returns: the volume is there, still whole, and moves back on the next Mount.
	b.start()
	eventually(t, timeout, "node-b to be back", func() bool { return nodeList(t, a.root)["node-b"].Reach == "ok" })
	assert.Equal(t, "written-on-a", runOn(ea, "-v", "appdata:/data", testImage, "cat", "/data/note"))
	assert.Equal(t, uint64(3), inspect(t, b.root, "appdata").Epoch)
	require.Equal(t, "node-a", inspect(t, b.root, "appdata").Node)

	// drayage volume move, run on node-a, sends the volume to node-b ahead of time; a
	// container there then starts without a move.
	out = run(t, binary, "--root", a.root, "volume", "move", "appdata", "--to", "node-b")
	assert.Contains(t, out, "moved volume appdata from node node-a to node node-b")
	info = inspect(t, a.root, "appdata")
	assert.Equal(t, "node-b", info.Node)
	assert.Equal(t, "idle", info.State)
	assert.Equal(t, uint64(4), info.Epoch)
	assert.Equal(t, "written-on-a", runOn(eb, "-v", "appdata:/data", testImage, "cat", "/data/note"))
	assert.Equal(t, uint64(4), inspect(t, a.root, "appdata").Epoch, "no second move")
	assert.Contains(t, run(t, binary, "--root", b.root, "volume", "move", "appdata", "--to", "node-b"), "on node node-b already")
	out = mustFail(t, binary, "--root", a.root, "volume", "move", "appdata", "--to", "node-z")
	assert.Contains(t, out, `node "node-z" is not a member of this cluster`)

	// A move forwarded to node-a while node-b's container holds the volume: node-a's
	// refusal reaches the user whole.
	id = eb.docker(t, "run", "-d", "--network", "none", "-v", "appdata:/data", testImage, "sleep", "3600")
	out = mustFail(t, binary, "--root", b.root, "volume", "move", "appdata", "--to", "node-a")
	assert.Contains(t, out, `volume "appdata" is mounted on node "node-b" by 1 container`)
	assert.NotContains(t, out, "%!")
	eb.docker(t, "rm", "-f", id)
}
