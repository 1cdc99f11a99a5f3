package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A node holding a replicated volume, mounted, is cut off from everything. A container
// started on a replica's node promotes the replica once the node's lease lapsed, and finds
// what the last sync carried. The old owner, back with its container still writing, is
// fenced: it refuses to serve or claim the volume and says so; once its container stops,
// it keeps what it wrote after its last sync as NAME-diverged-EPOCH-NODE, a volume every
// node lists. The replica count heals, and nothing was merged or dropped.
//
// The cluster runs on the embedded store: node-a's store member is cut off with it, and
// the other two voters go on.
func TestAFailoverPromotesAReplicaAndKeepsWhatTheOldOwnerWroteSince(t *testing.T) {
	nodes := startNodes(t, embeddedStore, []string{"node-a", "node-b", "node-c"},
		"DRAYAGE_SYNC_INTERVAL=2s", "DRAYAGE_METRICS_ADDR=:7796")
	a, b, c := nodes[0], nodes[1], nodes[2]
	dumpOnFailure(t, "fo", a, b, c)
	names, _ := voters(t, c)
	require.Equal(t, []string{"node-a", "node-b", "node-c"}, names, "three voters: one cut off leaves a quorum")
	vol := "-v=fo:/data"
	data := func(n *node, name string) string { return filepath.Join(n.state, "volumes", name, "data") }

	a.docker("volume", "create", "--driver", nodePlugin, "-o", "replicas=3", "fo")
	eventually(t, timeout, "both replicas of the new volume", func() bool { return len(readyReplicas(t, a, "fo")) == 2 })
	id := a.docker("run", "-d", "--network", "none", vol, testImage, "sh", "-c", "echo synced > /data/log && sleep 3600")
	eventually(t, 20*time.Second, "the container's write on both replicas", func() bool {
		want := treeOf(t, data(a, "fo"))
		return want["log"] != "" && equalTrees(t, want, data(b, "fo")) && equalTrees(t, want, data(c, "fo"))
	})

	// node-a is cut off from the other nodes and the store; its container writes on.
	a.cut()
	cut := time.Now()
	a.docker("exec", id, "sh", "-c", "echo late >> /data/log")
	var out string
	eventually(t, 3*timeout, "a container on node-b to start with the volume", func() bool {
		var err error
		out, err = tryRun("docker", "-H", b.engine.host, "run", "--rm", "--network", "none", vol, testImage, "cat", "/data/log")
		return err == nil
	})
	took := time.Since(cut)
	assert.Equal(t, "synced", out, "the promoted replica holds what the last sync carried")
	t.Logf("node-a cut off: a container on node-b ran with the volume %s later (lease TTL 5s)", took.Round(100*time.Millisecond))
	info := inspect(t, c.state, "fo")
	assert.Equal(t, "node-b", info.Node)
	assert.Equal(t, uint64(2), info.Epoch)
	assert.Contains(t, b.log(), "promoted a replica: the volume's owner is down")
	assert.Equal(t, 1.0, scrape(t, b)[`drayage_promotions_total{how="auto"}`])

	// node-a comes back with its container still running: fenced, it says so.
	a.heal()
	eventually(t, timeout, "node-a to report its fenced copy", func() bool {
		return strings.Contains(a.log(), "which is no longer the volume: stop them")
	})
	a.docker("rm", "-f", id)
	keep := "fo-diverged-1-node-a"
	eventually(t, timeout, "the diverged copy listed on node-c", func() bool {
		return strings.Contains(c.docker("volume", "ls", "--format", "{{.Name}}"), keep)
	})
	kept, err := os.ReadFile(filepath.Join(data(a, keep), "log"))
	require.NoError(t, err)
	assert.Equal(t, "synced\nlate\n", string(kept), "what node-a wrote while cut off is kept")
	assert.Equal(t, 1.0, scrape(t, a)[`drayage_diverged_copies_total`])
	assert.Regexp(t, "Warning: +volume "+keep+" on node node-a holds writes a failover of volume fo left behind", c.drayage("status"))
	assert.Equal(t, "synced", b.run(vol, testImage, "cat", "/data/log"), "and not merged into the volume")

	// The replica count heals: node-a, whose copy became the diverged volume, holds a
	// replica again.
	eventually(t, 2*timeout, "two ready replicas of the promoted volume", func() bool { return len(readyReplicas(t, b, "fo")) == 2 })
	eventually(t, timeout, "node-a's replica to hold the volume", func() bool {
		return equalTrees(t, treeOf(t, data(b, "fo")), data(a, "fo"))
	})
}

// dumpOnFailure logs, if the test fails, the last lines each node logged about volume
// name (its daemon's, through its engine's log).
func dumpOnFailure(t *testing.T, name string, nodes ...*node) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, n := range nodes {
			var lines []string
			for _, l := range strings.Split(n.log(), "\n") {
				if strings.Contains(l, "volume="+name) || strings.Contains(l, "lease") || strings.Contains(l, "level=ERROR") {
					lines = append(lines, l)
				}
			}
			lines = lines[max(0, len(lines)-40):]
			t.Logf("node %s, about volume %s:\n%s", n.name, name, strings.Join(lines, "\n"))
		}
	})
}
