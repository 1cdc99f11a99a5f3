package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/cluster/etcdstore"
)

// counter is a task's workload: it appends numbered lines to /data/log every 100 ms,
// each made durable (fdatasync) before the next, going on from the last number the
// volume holds, after a line saying where it started.
const counter = `n=$(grep -E '^[0-9]+$' /data/log 2>/dev/null | tail -n 1); n=${n:-0}; echo "start $NODE" >> /data/log
while :; do n=$((n+1)); echo $n >> /data/log; sync -d /data/log; sleep 0.1; done`

// A Swarm service's node crashes while its task writes: Swarm starts the task on the
// node holding the volume's replica, which is promoted; every line up to the replica's
// last sync is there, in order, and the task goes on from it. The crashed node comes back:
// the lines it wrote after that sync are kept as a diverged copy, the volume stays with
// its new owner, its replica count is back to 2, and the store never named two owners at
// one epoch. Then the new owner's daemon is paused for three lease TTLs: no second owner,
// nothing lost.
func TestSwarmFailoverAfterANodeCrashLosesOnlyWhatFollowedTheLastSync(t *testing.T) {
	nodes := startNodes(t, etcdStore, []string{"node-a", "node-b", "node-c"}, "DRAYAGE_SYNC_INTERVAL=2s", "DRAYAGE_METRICS_ADDR=:7796")
	a, b, c := nodes[0], nodes[1], nodes[2]
	dumpOnFailure(t, "lines", a, b, c)
	owners := watchOwners(t, a)
	c.docker("swarm", "init", "--advertise-addr", c.addr, "--default-addr-pool", "10.214.0.0/16")
	token := c.docker("swarm", "join-token", "-q", "worker")
	for _, n := range []*node{a, b} {
		n.docker("swarm", "join", "--advertise-addr", n.addr, "--token", token, c.addr+":2377")
	}
	bID := b.docker("info", "--format", "{{.Swarm.NodeID}}")
	image := c.docker("image", "inspect", "--format", "{{.Id}}", testImage)
	c.docker("node", "update", "--availability", "drain", bID)
	c.docker("service", "create", "--detach", "--name", "counter", "--no-resolve-image", "--constraint", "node.role==worker",
		"--mount", "type=volume,source=lines,target=/data,volume-driver="+nodePlugin+",volume-opt=replicas=2,volume-opt=sync-interval=2s",
		"--env", "NODE={{.Node.Hostname}}-{{.Node.ID}}", "--stop-grace-period", "2s", image, "sh", "-c", counter)
	taskOn := func(n *node) string {
		out, _ := tryRun("docker", "-H", n.engine.host, "ps", "-q", "--filter", "label=com.docker.swarm.service.name=counter")
		return strings.TrimSpace(out)
	}
	eventually(t, 2*timeout, "the task to run on node-a", func() bool { return taskOn(a) != "" })
	c.docker("node", "update", "--availability", "active", bID)
	data := func(n *node, name string) string { return filepath.Join(n.state, "volumes", name, "data") }
	eventually(t, timeout, "node-b's replica to hold 20 lines", func() bool {
		return len(numbers(t, filepath.Join(data(b, "lines"), "log"))) >= 20
	})

	a.crash()
	crashed := time.Now()
	eventually(t, 3*timeout, "the task to run on node-b", func() bool { return taskOn(b) != "" })
	t.Logf("node-a crashed: the task ran on node-b %s later", time.Since(crashed).Round(100*time.Millisecond))
	time.Sleep(time.Second) // a few lines from node-b
	vol := readLog(t, b.docker("exec", taskOn(b), "cat", "/data/log"))
	require.Len(t, vol.starts, 2, "started on node-a, then on node-b: %v", vol.starts)
	synced := vol.before[1] // the last line the promoted replica held
	assert.True(t, vol.consecutive, "every line up to the last sync is there, in order, and the task went on from it")
	info := inspect(t, c.state, "lines")
	assert.Equal(t, "node-b", info.Node)

	// node-a comes back: its old task is gone with the crash; what it wrote after the
	// last sync is kept as a diverged copy.
	a.restart()
	keep := fmt.Sprintf("lines-diverged-%d-node-a", info.Epoch-1)
	eventually(t, 2*timeout, "the diverged copy listed on node-c", func() bool {
		return strings.Contains(c.docker("volume", "ls", "--format", "{{.Name}}"), keep)
	})
	old := numbers(t, filepath.Join(data(a, keep), "log"))
	require.NotEmpty(t, old)
	lost := old[len(old)-1] - synced
	assert.GreaterOrEqual(t, lost, 0)
	for i, n := range old {
		require.Equal(t, i+1, n, "node-a's copy holds its lines in order")
	}
	t.Logf("lines written on node-a after the last sync (every 100 ms, sync-interval 2s): %d, kept in %s", lost, keep)
	assert.Equal(t, "node-b", inspect(t, a.state, "lines").Node, "the volume stays with its new owner")
	eventually(t, 2*timeout, "the replica count back to 2", func() bool { return len(readyReplicas(t, b, "lines")) == 1 })

	// The new owner's daemon is paused for three lease TTLs while its task writes on:
	// nothing is promoted in its place (its replica's node has no newer copy to offer,
	// and a paused daemon's containers still write), and when it resumes it holds the
	// volume, with every line.
	before := inspect(t, c.state, "lines").Epoch
	pid := b.pluginPID()
	require.NoError(t, syscall.Kill(pid, syscall.SIGSTOP))
	time.Sleep(15 * time.Second)
	require.NoError(t, syscall.Kill(pid, syscall.SIGCONT))
	eventually(t, timeout, "node-b to claim the volume again", func() bool { return inspect(t, c.state, "lines").State == "mounted" })
	assert.Equal(t, before, inspect(t, c.state, "lines").Epoch, "no promotion while node-b was paused")
	time.Sleep(time.Second)
	after := readLog(t, b.docker("exec", taskOn(b), "cat", "/data/log"))
	assert.True(t, after.consecutive, "every line is there, in order")
	c.docker("service", "rm", "counter")

	for epoch, who := range owners.byEpoch() {
		assert.Len(t, who, 1, "epoch %d had one owner: %v", epoch, who)
	}
	assert.True(t, owners.increasing(), "epochs only increase: %v", owners.history())
}

// taskLog is a counter's log: where each task started, the number before each start,
// and whether the numbers run 1, 2, 3, … with neither gap nor repeat.
type taskLog struct {
	starts      []string
	before      []int
	consecutive bool
}

func readLog(t *testing.T, s string) taskLog {
	t.Helper()
	l := taskLog{consecutive: true}
	last := 0
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		if rest, ok := strings.CutPrefix(line, "start "); ok {
			l.starts, l.before = append(l.starts, rest), append(l.before, last)
			continue
		}
		n, err := strconv.Atoi(line)
		require.NoError(t, err, "line %q", line)
		l.consecutive = l.consecutive && n == last+1
		last = n
	}
	return l
}

// numbers are the numbered lines of the log at path, in order.
func numbers(t *testing.T, path string) []int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []int
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if n, err := strconv.Atoi(line); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// ownerHistory is every version of the volume records the store held during a test, as
// a watch saw them.
type ownerHistory struct {
	mu      sync.Mutex
	records []cluster.Volume
}

// watchOwners records every change of the volume records in node n's store until the
// test ends.
func watchOwners(t *testing.T, n *node) *ownerHistory {
	t.Helper()
	var url string
	for _, kv := range n.env {
		if v, ok := strings.CutPrefix(kv, "DRAYAGE_STORE=etcd://"); ok {
			url = v
		}
	}
	require.NotEmpty(t, url, "an etcd store")
	s, err := etcdstore.Open(context.Background(), etcdstore.Options{Endpoints: []string{url}})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	events, err := s.Watch(ctx, "drayage/volumes/", 0)
	require.NoError(t, err)
	h := &ownerHistory{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range events {
			var v cluster.Volume
			if ev.Deleted || json.Unmarshal(ev.Value, &v) != nil {
				continue
			}
			h.mu.Lock()
			h.records = append(h.records, v)
			h.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); <-done; _ = s.Close() })
	return h
}

// byEpoch lists the owners each volume's epoch had, by "volume@epoch".
func (h *ownerHistory) byEpoch() map[string][]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string][]string{}
	for _, v := range h.records {
		k := fmt.Sprintf("%s@%d", v.Name, v.Epoch)
		if !slices.Contains(out[k], v.Owner) {
			out[k] = append(out[k], v.Owner)
		}
	}
	return out
}

// increasing reports whether each volume's epoch never went down.
func (h *ownerHistory) increasing() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	last := map[string]uint64{}
	for _, v := range h.records {
		if v.Epoch < last[v.Name] {
			return false
		}
		last[v.Name] = v.Epoch
	}
	return true
}

func (h *ownerHistory) history() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, v := range h.records {
		out = append(out, fmt.Sprintf("%s@%d:%s", v.Name, v.Epoch, v.Owner))
	}
	return out
}
