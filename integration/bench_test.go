package integration

import (
	"fmt"
	"os"
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
	settled(b, a) // the first syncs of the filled volumes end before the baseline
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
