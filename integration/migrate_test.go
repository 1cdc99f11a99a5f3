package integration

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The product's core path on real engines, each a node with the managed plugin: a volume
// written on one node appears in a container started on another. Once on etcd, once on
// Consul.
func TestVolumeFollowsItsContainerToAnotherNode(t *testing.T) {
	for _, kind := range []storeKind{etcdStore, consulStore} {
		t.Run(string(kind), func(t *testing.T) { testVolumeFollowsItsContainer(t, kind) })
	}
}

func testVolumeFollowsItsContainer(t *testing.T, kind storeKind) {
	nodes := startNodes(t, kind, []string{"node-a", "node-b"}, "DRAYAGE_DYNAMIC_LIMIT=4MiB")
	a, b := nodes[0], nodes[1]
	vol := "-v=appdata:/data"

	a.docker("volume", "create", "--driver", nodePlugin, "appdata")
	a.run(vol, testImage, "sh", "-c", `echo written-on-a > /data/note && mkdir /data/sub && ln -s note /data/sub/link &&
		chown 1234:5678 /data/note && chmod 640 /data/note && head -c 1048576 /dev/urandom > /data/blob && md5sum /data/blob > /data/blob.md5`)

	start := time.Now()
	out := b.run(vol, testImage, "sh", "-c", "cat /data/note; stat -c '%u:%g %a' /data/note; readlink /data/sub/link; md5sum -c /data/blob.md5")
	t.Logf("container on node-b started with the volume pulled from node-a in %s", time.Since(start).Round(10*time.Millisecond))
	assert.Equal(t, "written-on-a\n1234:5678 640\nnote\n/data/blob: OK", out, "every byte, owner and mode arrived")

	info := inspect(t, a.state, "appdata")
	assert.Equal(t, "node-b", info.Node, "node-b owns it now")
	assert.Equal(t, uint64(2), info.Epoch)
	eventually(t, timeout, "node-a to drop its old copy", func() bool {
		_, err := os.Stat(filepath.Join(a.state, "volumes", "appdata"))
		return os.IsNotExist(err)
	})
	assert.Contains(t, a.docker("volume", "inspect", "--format", "{{.Status}}", "appdata"), "node:node-b",
		"docker volume inspect on any node shows the owner")

	// In use on node-b: node-a's Mount fails at once, saying where and what to do.
	id := b.docker("run", "-d", "--network", "none", vol, testImage, "sleep", "3600")
	out = a.runFails(vol, testImage, "true")
	assert.Contains(t, out, `volume "appdata" is mounted on node "node-b" by 1 container; stop it there or use 'drayage volume move appdata --to node-a'`)
	b.docker("rm", "-f", id)

	// node-b crashes (engine, plugin and all): a Mount on node-a fails fast, naming the
	// node and when it was seen.
	b.crash()
	eventually(t, timeout, "node-a to see node-b dead", func() bool { return nodeList(t, a.state)["node-b"].State == "dead" })
	start = time.Now()
	out = a.runFails(vol, testImage, "true")
	assert.Contains(t, out, `held by node "node-b", which is down (last seen`)
	assert.Less(t, time.Since(start), 10*time.Second, "a clear error within seconds, not the engine's deadline")
	t.Logf("Mount with the owner down failed in %s", time.Since(start).Round(10*time.Millisecond))
	assert.Equal(t, "node-b", inspect(t, a.state, "appdata").Node, "the record stays with node-b")

	// It returns: the volume is there, whole, and moves back on the next Mount.
	b.restart()
	eventually(t, timeout, "node-b to be back", func() bool { return nodeList(t, a.state)["node-b"].Reach == "ok" })
	assert.Equal(t, "written-on-a\n/data/blob: OK", a.run(vol, testImage, "sh", "-c", "cat /data/note; md5sum -c /data/blob.md5"))
	require.Equal(t, "node-a", inspect(t, b.state, "appdata").Node)
	assert.Equal(t, uint64(3), inspect(t, b.state, "appdata").Epoch)

	// Grown past the dynamic limit: a container start elsewhere is refused with the size,
	// the limit and the command that moves it; that command works from any node, and the
	// container then starts without a move.
	a.run(vol, testImage, "sh", "-c", "head -c 5242880 /dev/urandom > /data/big && md5sum /data/big > /data/big.md5")
	eventually(t, timeout, "node-a to record the new size", func() bool { return inspect(t, b.state, "appdata").Size > 4<<20 })
	out = b.runFails(vol, testImage, "true")
	assert.Contains(t, out, `volume "appdata" on node "node-a" holds 6`)
	assert.Contains(t, out, `MiB, above the 4MiB that a container start moves (DRAYAGE_DYNAMIC_LIMIT); move it first with 'drayage volume move appdata --to node-b'`)
	out = a.drayage("volume", "move", "appdata", "--to", "node-b")
	assert.Contains(t, out, "moved volume appdata from node node-a to node node-b")
	info = inspect(t, a.state, "appdata")
	assert.Equal(t, "node-b", info.Node)
	assert.Equal(t, "idle", info.State)
	assert.Equal(t, uint64(4), info.Epoch)
	assert.Equal(t, "/data/big: OK", b.run(vol, testImage, "md5sum", "-c", "/data/big.md5"))
	assert.Equal(t, uint64(4), inspect(t, a.state, "appdata").Epoch, "no second move")
	assert.Contains(t, b.drayage("volume", "move", "appdata", "--to", "node-b"), "on node node-b already")
	out = a.drayageFails("volume", "move", "appdata", "--to", "node-z")
	assert.Contains(t, out, `node "node-z" is not a member of this cluster`)

	// A move forwarded to node-a while node-b's container holds the volume: node-a's
	// refusal reaches the user whole.
	id = b.docker("run", "-d", "--network", "none", vol, testImage, "sleep", "3600")
	out = b.drayageFails("volume", "move", "appdata", "--to", "node-a")
	assert.Contains(t, out, `volume "appdata" is mounted on node "node-b" by 1 container`)
	assert.NotContains(t, out, "%!")
	out = a.drayageFails("volume", "copy", "appdata", "appcopy", "--to", "node-a")
	assert.Contains(t, out, `volume "appdata" is mounted on node "node-b" by 1 container`)
	b.docker("rm", "-f", id)

	// drayage volume copy, run on node-b, makes a new volume on node-a; the source stays.
	out = b.drayage("volume", "copy", "appdata", "appcopy", "--to", "node-a")
	assert.Contains(t, out, "appcopy")
	assert.Equal(t, "node-a", inspect(t, b.state, "appcopy").Node)
	assert.Equal(t, "node-b", inspect(t, b.state, "appdata").Node)
	assert.Equal(t, "written-on-a\n/data/big: OK", a.run("-v=appcopy:/data", testImage, "sh", "-c", "cat /data/note; md5sum -c /data/big.md5"))
	out = b.drayageFails("volume", "copy", "appdata", "appcopy", "--to", "node-a")
	assert.Contains(t, out, `volume "appcopy" exists already, on node "node-a"`)

	// drayage volume rm, run on node-b, removes the copy held on node-a, data and all.
	b.drayage("volume", "rm", "appcopy")
	eventually(t, timeout, "node-a to delete the copy's data", func() bool {
		_, err := os.Stat(filepath.Join(a.state, "volumes", "appcopy"))
		return os.IsNotExist(err)
	})
	assert.NotContains(t, a.drayage("volume", "ls"), "appcopy")
	out = b.drayageFails("volume", "rm", "appcopy")
	assert.Contains(t, out, `volume "appcopy"`)
}

// With DRAYAGE_KEEP_REPLICA, a node keeps its copy of a volume that moved away, and a
// move back sends only what changed meanwhile.
func TestMoveBackSendsOnlyTheDelta(t *testing.T) {
	nodes := startNodes(t, etcdStore, []string{"node-a", "node-b"}, "DRAYAGE_KEEP_REPLICA=true", "DRAYAGE_METRICS_ADDR=:7796")
	a, b := nodes[0], nodes[1]
	vol := "-v=files:/data"
	a.docker("volume", "create", "--driver", nodePlugin, "files")
	a.run(vol, testImage, "sh", "-c", `cd /data && for i in $(seq 100); do head -c 65536 /dev/urandom > f$i; done`)

	b.run(vol, testImage, "sh", "-c", "head -c 65536 /dev/urandom > /data/f7 && echo new > /data/added && rm /data/f9 && md5sum /data/* > /tmp/sums")
	sums := b.run(vol, testImage, "md5sum", "/data/f1", "/data/f7", "/data/added")
	_, err := os.Stat(filepath.Join(a.state, "volumes", "files"))
	require.NoError(t, err, "node-a keeps its old copy")

	out := a.run(vol, testImage, "sh", "-c", "md5sum /data/f1 /data/f7 /data/added; ls /data | wc -l")
	assert.Equal(t, sums+"\n100", out, "node-a sees node-b's changes: one file changed, one added, one removed")
	toB, toA := sentBytes(t, a, "files"), sentBytes(t, b, "files")
	require.Len(t, toB, 1)
	require.Len(t, toA, 1)
	assert.Equal(t, int64(100*65536), toB[0], "the first move sends everything")
	assert.Equal(t, int64(65536+4), toA[0], "the move back sends only the changed and the added file")
	t.Logf("bytes sent: %d to node-b, %d back to node-a", toB[0], toA[0])

	// The metrics of both plugins, scraped on the nodes' addresses, agree with the logs.
	ma, mb := scrape(t, a), scrape(t, b)
	assert.Equal(t, 6553600.0, mb[`drayage_transfer_bytes_total{direction="received"}`])
	assert.Equal(t, 65540.0, ma[`drayage_transfer_bytes_total{direction="received"}`])
	assert.Equal(t, 65540.0, mb[`drayage_transfer_bytes_total{direction="sent"}`])
	assert.Equal(t, 2.0, ma[`drayage_transfer_files_total{direction="received"}`], "the changed and the added file")
	assert.Equal(t, 1.0, ma[`drayage_transfers_completed_total{role="receive"}`])
	assert.Equal(t, 2.0, ma[`drayage_cluster_members{state="alive"}`])

	// drayage status on node-a: this node, the store, both members, the volume held here.
	var st struct {
		Node    struct{ Name string }
		Store   struct{ OK bool }
		Members []struct{ Name, State string }
		Volumes struct{ Total int }
	}
	require.NoError(t, json.Unmarshal([]byte(a.drayage("status", "--json")), &st))
	assert.Equal(t, "node-a", st.Node.Name)
	assert.True(t, st.Store.OK)
	assert.Len(t, st.Members, 2)
	assert.Equal(t, 1, st.Volumes.Total)
}

// scrape reads node n's Prometheus metrics (DRAYAGE_METRICS_ADDR=:7796): series to value.
func scrape(t testing.TB, n *node) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + n.addr + ":7796/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	series := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if name, value, ok := strings.Cut(line, " "); ok && !strings.HasPrefix(line, "#") {
			v, err := strconv.ParseFloat(value, 64)
			require.NoError(t, err, line)
			series[name] = v
		}
	}
	return series
}
