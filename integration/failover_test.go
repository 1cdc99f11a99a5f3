package integration

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
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
	// A volume that is never promoted automatically (max-lag 0), its replica on node-c.
	a.docker("volume", "create", "--driver", nodePlugin, "-o", "replicas=2", "-o", "replica-nodes=node-c", "-o", "max-lag=0", "strict")
	strictID := a.docker("run", "-d", "--network", "none", "-v=strict:/data", testImage, "sh", "-c", "echo synced > /data/log && sleep 3600")
	eventually(t, 20*time.Second, "the write on node-c's replica of strict", func() bool {
		want := treeOf(t, data(a, "strict"))
		return want["log"] != "" && equalTrees(t, want, data(c, "strict"))
	})

	// node-a is cut off from the other nodes and the store; its containers write on.
	a.cut()
	cut := time.Now()
	a.docker("exec", id, "sh", "-c", "echo late >> /data/log")
	a.docker("exec", strictID, "sh", "-c", "echo late >> /data/log")
	// node-b and node-c both start a container with the volume, again and again until
	// one runs: one promotion wins.
	var out string
	var winner *node
	eventually(t, 3*timeout, "a container on node-b or node-c to start with the volume", func() bool {
		outs, errs := make([]string, 2), make([]error, 2)
		var wg sync.WaitGroup
		for i, n := range []*node{b, c} {
			wg.Go(func() {
				outs[i], errs[i] = tryRun("docker", "-H", n.engine.host, "run", "--rm", "--network", "none", vol, testImage, "cat", "/data/log")
			})
		}
		wg.Wait()
		for i, n := range []*node{b, c} {
			if errs[i] == nil && winner == nil {
				out, winner = outs[i], n
			}
		}
		return winner != nil
	})
	took := time.Since(cut)
	assert.Equal(t, "synced", out, "the promoted replica holds what the last sync carried")
	t.Logf("node-a cut off: a container on node %s ran with the volume %s later (lease TTL 5s)", winner.name, took.Round(100*time.Millisecond))
	info := inspect(t, c.state, "fo")
	owner := map[string]*node{"node-b": b, "node-c": c}[info.Node] // the other's start may have moved it on since
	require.NotNil(t, owner, "held by node-b or node-c: %s", info.Node)
	pb, pc := scrape(t, b), scrape(t, c)
	const auto = `drayage_promotions_total{how="auto"}`
	assert.Equal(t, 1.0, pb[auto]+pc[auto], "exactly one node promoted a replica (node-b %v, node-c %v)", pb[auto], pc[auto])
	assert.Contains(t, b.log()+c.log(), "promoted a replica: the volume's owner is down")

	// strict's replica is not promoted by a start: the error gives the lag and the
	// command; the command promotes it, and the start then pulls it from node-c.
	eventually(t, 3*timeout, "the start of strict refused for its max-lag", func() bool {
		out, err := tryRun("docker", "-H", b.engine.host, "run", "--rm", "--network", "none", "-v=strict:/data", testImage, "true")
		return err != nil && strings.Contains(out, "drayage volume promote strict --to node-c --accept-loss")
	})
	assert.Contains(t, b.drayage("volume", "promote", "strict", "--to", "node-c", "--accept-loss"), "promoted node node-c's replica of volume strict")
	assert.Equal(t, "synced", b.run("-v=strict:/data", testImage, "cat", "/data/log"))
	assert.Equal(t, 1.0, scrape(t, b)[`drayage_promotions_total{how="accept_loss"}`])

	// node-a comes back with its container still running: fenced, it says so.
	a.heal()
	eventually(t, timeout, "node-a to report its fenced copy", func() bool {
		return strings.Contains(a.log(), "which is no longer the volume: stop them")
	})
	a.docker("rm", "-f", id, strictID)
	keep := "fo-diverged-1-node-a"
	eventually(t, timeout, "the diverged copy listed on node-c", func() bool {
		return strings.Contains(c.docker("volume", "ls", "--format", "{{.Name}}"), keep)
	})
	kept, err := os.ReadFile(filepath.Join(data(a, keep), "log"))
	require.NoError(t, err)
	assert.Equal(t, "synced\nlate\n", string(kept), "what node-a wrote while cut off is kept")
	assert.Regexp(t, "Warning: +volume "+keep+" on node node-a holds writes a failover of volume fo left behind", c.drayage("status"))
	assert.Equal(t, "synced", owner.run(vol, testImage, "cat", "/data/log"), "and not merged into the volume")
	eventually(t, timeout, "strict's skipped write kept as a diverged copy", func() bool {
		b, err := os.ReadFile(filepath.Join(data(a, "strict-diverged-1-node-a"), "log"))
		return err == nil && string(b) == "synced\nlate\n"
	})
	assert.Equal(t, 2.0, scrape(t, a)[`drayage_diverged_copies_total`], "fo's and strict's")

	// The replica count heals: node-a, whose copy became the diverged volume, holds a
	// replica again.
	eventually(t, 2*timeout, "two ready replicas of the promoted volume", func() bool { return len(readyReplicas(t, owner, "fo")) == 2 })
	eventually(t, timeout, "node-a's replica to hold the volume", func() bool {
		return equalTrees(t, treeOf(t, data(owner, "fo")), data(a, "fo"))
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
			var lines, key []string
			for _, l := range strings.Split(n.log(), "\n") {
				switch {
				case strings.Contains(l, "promot") || strings.Contains(l, "lease") || strings.Contains(l, "took over"):
					key = append(key, l)
				case strings.Contains(l, "volume="+name) || strings.Contains(l, "level=ERROR"):
					lines = append(lines, l)
				}
			}
			lines = append(key, lines[max(0, len(lines)-40):]...)
			t.Logf("node %s, about volume %s:\n%s", n.name, name, strings.Join(lines, "\n"))
		}
	})
}
