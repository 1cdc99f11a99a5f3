package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Benchmarks on real engines, for make bench (go test -bench; never part of make test).
// They report figures, each beside a peer measured in the same run; they assert only
// that the data is where it must be.

// BenchmarkStartAfterDrain: a container running on the owner of a replicated 1 GiB
// volume changes 1% of it in place and is stopped (the drain; its Unmount syncs the
// replica before it answers), then one starts on the replica's node: the time to that
// start, against the same start with a volume local to that node, and the stop's time.
// Each round moves the volume back, untimed.
func BenchmarkStartAfterDrain(b *testing.B) {
	nodes := startNodes(b, etcdStore, []string{"node-a", "node-b"})
	a, n := nodes[0], nodes[1]
	fill := `for i in 0 1 2 3; do head -c 268435456 /dev/urandom > /data/f$i; done`
	a.docker("volume", "create", "--driver", nodePlugin, "-o", "replicas=2", "rep")
	a.run("-v=rep:/data", testImage, "sh", "-c", fill)
	n.docker("volume", "create", "--driver", nodePlugin, "loc")
	n.run("-v=loc:/data", testImage, "sh", "-c", fill)
	// 1% of 1 GiB: 160 writes of 64 KiB spread over the four files.
	change := `for i in $(seq 0 159); do head -c 65536 /dev/urandom | dd of=/data/f$((i % 4)) bs=65536 seek=$((i * 97 % 4096)) conv=notrunc 2>/dev/null; done`
	start := func(on *node, volume string) (string, time.Duration) {
		t0 := time.Now()
		id := on.docker("run", "-d", "--network", "none", "-v="+volume+":/data", testImage, "sleep", "600")
		return id, time.Since(t0)
	}
	var moved, local, stopped []time.Duration
	for range max(b.N, 3) {
		id, _ := start(a, "rep") // back on node-a (untimed)
		a.docker("exec", id, "sh", "-c", change)
		t0 := time.Now()
		a.docker("rm", "-f", id) // the drain: the task stops on node-a
		stopped = append(stopped, time.Since(t0))
		id, d := start(n, "rep")
		moved = append(moved, d)
		n.docker("rm", "-f", id)
		id, d = start(n, "loc")
		local = append(local, d)
		n.docker("rm", "-f", id)
	}
	m, l, s := median(moved), median(local), median(stopped)
	b.ReportMetric(m.Seconds(), "s/start-replicated")
	b.ReportMetric(l.Seconds(), "s/start-local")
	b.ReportMetric(m.Seconds()/l.Seconds(), "x-local")
	b.ReportMetric(s.Seconds(), "s/stop")
	b.Logf("start on the replica's node after the drain: %s (median of %d); with a local volume: %s; %.2fx. The stop on the owner, its Unmount syncing the replica: %s",
		m, len(moved), l, m.Seconds()/l.Seconds(), s)
}

// BenchmarkIdleReplicatedVolumes: BENCH_IDLE_VOLUMES (100) replicated volumes of
// BENCH_IDLE_FILES (10,000) files each, all mounted by one container that does nothing:
// the CPU time both daemons spend in a minute, against the same minute of the same
// daemons with the container stopped, scaled to an hour. The sync interval is 5 s, so
// the periodic walk (every 10 intervals) runs once a minute: at the default 30 s it runs
// six times less often.
func BenchmarkIdleReplicatedVolumes(b *testing.B) {
	volumes, files := envInt("BENCH_IDLE_VOLUMES", 100), envInt("BENCH_IDLE_FILES", 10000)
	nodes := startNodes(b, etcdStore, []string{"node-a", "node-b"}, "DRAYAGE_SYNC_INTERVAL=5s", "DRAYAGE_METRICS_ADDR=:7796")
	a, r := nodes[0], nodes[1]
	var mounts []string
	for i := range volumes {
		name := fmt.Sprintf("idle%03d", i)
		a.docker("volume", "create", "--driver", nodePlugin, "-o", "replicas=2", "-o", "replica-nodes=node-b", name)
		mounts = append(mounts, fmt.Sprintf("-v=%s:/d/%d", name, i))
	}
	for batch := range slices.Chunk(mounts, 20) {
		a.run(append(batch, testImage, "sh", "-c", fmt.Sprintf(`for v in /d/*; do mkdir $v/a && for i in $(seq %d); do echo $i > $v/a/f$i; done; done`, files))...)
	}
	cpu := func() time.Duration { return processCPU(b, a.pluginPID()) + processCPU(b, r.pluginPID()) }
	const span = time.Minute
	settled(b, a)             // the first syncs of the filled volumes end before the baseline
	for _, n := range nodes { // and the trees they replaced are deleted (every 30 s)
		eventually(b, 2*timeout, "node "+n.name+"'s trash to be emptied", func() bool {
			left, _ := os.ReadDir(filepath.Join(n.state, "trash"))
			return len(left) == 0
		})
	}
	c0 := cpu()
	time.Sleep(span)
	unmounted := cpu() - c0
	id := a.docker(append(append([]string{"run", "-d", "--network", "none"}, mounts...), testImage, "sleep", "3600")...)
	settled(b, a) // the first syncs after the mounts
	c0 = cpu()
	time.Sleep(span)
	mounted := cpu() - c0
	a.docker("rm", "-f", id)
	perHour := func(d time.Duration) float64 { return d.Seconds() * float64(time.Hour/span) }
	b.ReportMetric(perHour(mounted), "cpu-s/h-mounted")
	b.ReportMetric(perHour(unmounted), "cpu-s/h-unmounted")
	b.Logf("%d idle replicated volumes of %d files, mounted: %.1f CPU-seconds an hour on the two nodes; unmounted: %.1f",
		volumes, files, perHour(mounted), perHour(unmounted))
}

// processCPU is the user and system time process pid has used.
func processCPU(t testing.TB, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	require.NoError(t, err)
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkRecoveryAfterNodeCrash measures the time to recover: a Swarm service's node
// crashes (engine, containerd and plugin killed at once, as a power cut does) and its task
// runs again on another node with its replicated volume. The phases: gossip sees the node
// dead; Swarm's manager marks it down and places the task elsewhere; drayage's Mount
// there (the owner's lease lapses, the replica is promoted and mounted). node-c is the
// manager; the task runs on node-a, and its volume keeps a replica on node-b.
func BenchmarkRecoveryAfterNodeCrash(b *testing.B) {
	nodes := startNodes(b, etcdStore, []string{"node-a", "node-b", "node-c"}, "DRAYAGE_SYNC_INTERVAL=2s")
	a, r, c := nodes[0], nodes[1], nodes[2]
	c.docker("swarm", "init", "--advertise-addr", c.addr, "--default-addr-pool", "10.214.0.0/16")
	token := c.docker("swarm", "join-token", "-q", "worker")
	for _, n := range []*node{a, r} {
		n.docker("swarm", "join", "--advertise-addr", n.addr, "--token", token, c.addr+":2377")
	}
	aID, rID := a.docker("info", "--format", "{{.Swarm.NodeID}}"), r.docker("info", "--format", "{{.Swarm.NodeID}}")
	image := c.docker("image", "inspect", "--format", "{{.Id}}", testImage)
	c.docker("node", "update", "--availability", "drain", rID)
	c.docker("service", "create", "--detach", "--name", "rto", "--no-resolve-image", "--constraint", "node.role==worker",
		"--mount", "type=volume,source=rto,target=/data,volume-driver="+nodePlugin+",volume-opt=replicas=2,volume-opt=replica-nodes=node-b,volume-opt=sync-interval=2s",
		"--env", "NODE={{.Node.ID}}", "--stop-grace-period", "2s",
		image, "sh", "-c", `echo "ran on $NODE" >> /data/log && exec sleep 3600`)
	taskOn := func(n *node) string {
		out, _ := tryRun("docker", "-H", n.engine.host, "ps", "-q", "--filter", "label=com.docker.swarm.service.name=rto")
		return strings.TrimSpace(out)
	}
	eventually(b, 2*timeout, "the task to run on node-a", func() bool { return taskOn(a) != "" })
	c.docker("node", "update", "--availability", "active", rID)
	eventually(b, timeout, "node-b's replica to have the task's write", func() bool {
		return equalTrees(b, treeOf(b, filepath.Join(a.state, "volumes", "rto", "data")), filepath.Join(r.state, "volumes", "rto", "data"))
	})

	a.crash()
	crashed := time.Now()
	var gossip, swarmDown, running time.Duration
	for running == 0 {
		if time.Since(crashed) > 3*timeout {
			b.Fatalf("the task did not run again within %s", 3*timeout)
		}
		now := time.Since(crashed)
		if gossip == 0 && nodeList(b, r.state)["node-a"].State != "alive" {
			gossip = now
		}
		if swarmDown == 0 && strings.TrimSpace(c.docker("node", "inspect", "--format", "{{.Status.State}}", aID)) == "down" {
			swarmDown = now
		}
		if taskOn(r) != "" {
			running = now
		}
		time.Sleep(200 * time.Millisecond)
	}
	out := r.docker("exec", taskOn(r), "cat", "/data/log")
	require.Equal(b, "ran on "+aID+"\nran on "+rID, out, "the task on node-b sees what it wrote on node-a")
	mount := mountTook(b, r, "rto")
	b.ReportMetric(gossip.Seconds(), "s-gossip-dead")
	b.ReportMetric(swarmDown.Seconds(), "s-swarm-down")
	b.ReportMetric(mount.Seconds(), "s-mount")
	b.ReportMetric(running.Seconds(), "s-running")
	b.Logf("node crash → task running on node-b with its data: %s (gossip saw node-a dead at %s, Swarm marked it down at %s; the Mount that promoted the replica took %s; lease TTL 5s)",
		running.Round(100*time.Millisecond), gossip.Round(100*time.Millisecond), swarmDown.Round(100*time.Millisecond), mount.Round(time.Millisecond))
	c.docker("service", "rm", "rto")
}

// mountTook is how long node n's promotion of a replica of volume name took, within its
// Mount (the newest such log line's took).
func mountTook(t testing.TB, n *node, name string) time.Duration {
	t.Helper()
	var took time.Duration
	for _, l := range strings.Split(n.log(), "\n") {
		if !strings.Contains(l, "replica took its place") || !strings.Contains(l, "volume="+name) {
			continue
		}
		if i := strings.Index(l, "took="); i >= 0 {
			f := strings.Fields(l[i+len("took="):])
			if len(f) > 0 {
				took, _ = time.ParseDuration(strings.Trim(f[0], `"`))
			}
		}
	}
	return took
}
