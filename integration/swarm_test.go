package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A Swarm service's task moves to another node when its node is drained, and its volume
// follows it.
func TestSwarmServiceFollowsItsTaskToADrainedNodesPeer(t *testing.T) {
	began := time.Now()
	phase := func(what string) { t.Logf("%s: %s", time.Since(began).Round(100*time.Millisecond), what) }
	nodes := startNodes(t, etcdStore, []string{"node-a", "node-b"})
	phase("nodes up")
	a, b := nodes[0], nodes[1]
	a.docker("swarm", "init", "--advertise-addr", a.addr, "--default-addr-pool", "10.214.0.0/16")
	token := a.docker("swarm", "join-token", "-q", "worker")
	b.docker("swarm", "join", "--advertise-addr", b.addr, "--token", token, a.addr+":2377")
	phase("swarm formed")
	aID, bID := a.docker("info", "--format", "{{.Swarm.NodeID}}"), b.docker("info", "--format", "{{.Swarm.NodeID}}")

	// The task starts on node-a (node-b drained for now) and writes which node it ran on.
	// The image is named by ID: a worker skips the registry (there is none here) only then.
	image := a.docker("image", "inspect", "--format", "{{.Id}}", testImage)
	a.docker("node", "update", "--availability", "drain", bID)
	a.docker("service", "create", "--detach", "--name", "drayage-it", "--no-resolve-image",
		"--mount", "type=volume,source=svcdata,target=/data,volume-driver="+nodePlugin,
		"--env", "NODE={{.Node.ID}}", "--stop-grace-period", "2s",
		image, "sh", "-c", `echo "ran on $NODE" >> /data/log && exec sleep 3600`)
	taskOn := func(n *node) string {
		return strings.TrimSpace(n.docker("ps", "-q", "--filter", "label=com.docker.swarm.service.name=drayage-it"))
	}
	eventually(t, 2*timeout, "the task to run on node-a", func() bool { return taskOn(a) != "" })
	phase("task running on node-a")
	assert.Equal(t, "node-a", inspect(t, b.state, "svcdata").Node)

	// Drain node-a: the task restarts on node-b, which pulls the volume on Mount.
	a.docker("node", "update", "--availability", "active", bID)
	start := time.Now()
	a.docker("node", "update", "--availability", "drain", aID)
	eventually(t, 2*timeout, "the task to run on node-b", func() bool { return taskOn(b) != "" })
	t.Logf("the task ran on node-b %s after node-a was drained", time.Since(start).Round(100*time.Millisecond))
	require.Empty(t, taskOn(a))

	out := b.docker("exec", taskOn(b), "cat", "/data/log")
	assert.Equal(t, "ran on "+aID+"\nran on "+bID, out, "the task on node-b sees what it wrote on node-a")
	info := inspect(t, a.state, "svcdata")
	assert.Equal(t, "node-b", info.Node)
	assert.Equal(t, "mounted", info.State)
	t.Logf("service tasks: %s", a.docker("service", "ps", "--format", "{{.CurrentState}} {{.Error}}", "drayage-it"))
	a.docker("service", "rm", "drayage-it")

	// A replicated volume: drained, the task restarts on the node holding the replica,
	// and its Mount sends only the delta since the replica's last sync (its old task's
	// stop synced it).
	a.docker("service", "create", "--detach", "--name", "drayage-rep", "--no-resolve-image",
		"--mount", "type=volume,source=repdata,target=/data,volume-driver="+nodePlugin+",volume-opt=replicas=2,volume-opt=sync-interval=2s",
		"--env", "NODE={{.Node.ID}}", "--stop-grace-period", "2s",
		image, "sh", "-c", `head -c 8388608 /dev/urandom > /data/blob-$NODE && echo "ran on $NODE" >> /data/log && exec sleep 3600`)
	repOn := func(n *node) string {
		return strings.TrimSpace(n.docker("ps", "-q", "--filter", "label=com.docker.swarm.service.name=drayage-rep"))
	}
	eventually(t, 2*timeout, "the replicated volume's task to run on node-b", func() bool { return repOn(b) != "" })
	eventually(t, timeout, "node-a's replica to have the task's writes", func() bool {
		return equalTrees(t, treeOf(t, filepath.Join(b.state, "volumes", "repdata", "data")), filepath.Join(a.state, "volumes", "repdata", "data"))
	})
	a.docker("node", "update", "--availability", "active", aID)
	start = time.Now()
	a.docker("node", "update", "--availability", "drain", bID)
	eventually(t, 2*timeout, "the replicated volume's task to run on node-a", func() bool { return repOn(a) != "" && repOn(b) == "" })
	t.Logf("the replicated volume's task ran on node-a %s after node-b was drained", time.Since(start).Round(100*time.Millisecond))
	out = a.docker("exec", repOn(a), "cat", "/data/log")
	assert.Equal(t, "ran on "+bID+"\nran on "+aID, out)
	moved := receivedBytes(t, a, "repdata")
	require.NotEmpty(t, moved)
	assert.Less(t, moved[len(moved)-1], int64(64<<10), "the Mount on the replica's node sends only the delta (the stop synced the rest)")
	t.Logf("the drain's move to the replica's node sent %d bytes of a volume of %d", moved[len(moved)-1], dirBytes(filepath.Join(b.state, "volumes", "repdata", "data")))
	a.docker("service", "rm", "drayage-rep")
	a.docker("node", "update", "--availability", "active", bID)
	a.docker("node", "update", "--availability", "drain", aID)

	// docs/swarm-stack.yml, deployed as it is with a stand-in image for postgres: its task
	// starts on node-b (node-a is drained), then follows node-b's drain to node-a.
	app := appImage(t, a, b)
	deploy := exec.Command("docker", "-H", a.engine.host, "stack", "deploy", "--resolve-image", "never",
		"-c", filepath.Join(repoRoot, "docs", "swarm-stack.yml"), "app")
	deploy.Env = append(os.Environ(), "IMAGE="+app)
	out2, err := deploy.CombinedOutput()
	require.NoError(t, err, "docker stack deploy: %s", out2)
	stackTask := func(n *node) string {
		return strings.TrimSpace(n.docker("ps", "-q", "--filter", "label=com.docker.stack.namespace=app"))
	}
	eventually(t, 2*timeout, "the stack's task to run on node-b", func() bool { return stackTask(b) != "" })
	a.docker("node", "update", "--availability", "active", aID)
	a.docker("node", "update", "--availability", "drain", bID)
	eventually(t, 2*timeout, "the stack's task to run on node-a", func() bool { return stackTask(a) != "" && stackTask(b) == "" })
	runs := a.docker("exec", stackTask(a), "cat", "/var/lib/postgresql/data/runs")
	assert.Len(t, strings.Split(runs, "\n"), 2, "the task on node-a sees the run on node-b: %q", runs)
	assert.Equal(t, "node-a", inspect(t, b.state, "pgdata").Node)
	a.docker("stack", "rm", "app")
}

// appImage builds a stand-in for a database image from the test image: it records each
// start in its data dir (where postgres keeps its data) and waits. It is loaded into the
// nodes' engines and returned by ID (so Swarm workers don't ask a registry).
func appImage(t *testing.T, nodes ...*node) string {
	t.Helper()
	const ref = "drayage-test/app:latest"
	build := exec.Command("docker", "build", "-q", "-t", ref, "-")
	build.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
	build.Stdin = strings.NewReader("FROM " + testImage + "\n" +
		`CMD ["sh", "-c", "hostname >> /var/lib/postgresql/data/runs; trap 'exit 0' TERM; sleep 3600 & wait"]` + "\n")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "docker build: %s", out)
	for _, n := range nodes {
		load := exec.Command("sh", "-c", `docker save "$1" | docker -H "$2" load -q`, "sh", ref, n.engine.host)
		out, err := load.CombinedOutput()
		require.NoError(t, err, "load %s into node %s: %s", ref, n.name, out)
	}
	return nodes[0].docker("image", "inspect", "--format", "{{.Id}}", ref)
}
