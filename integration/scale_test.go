package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/cluster/storetest"
	"github.com/drayage/drayage/daemon/metrics/metricstest"
	"github.com/drayage/drayage/daemon/volume"
)

// Benchmarks for make scale (scripts/scale.sh; never part of make test): what drayage
// costs as volumes and nodes grow. Each figure is logged and, if SCALE_OUT names a file,
// appended to it as a JSON line for the table make scale prints.

// scaleFigure is one measured figure.
type scaleFigure struct {
	Figure string  `json:"figure"`
	Value  float64 `json:"value"`
	Unit   string  `json:"unit"`
	Detail string  `json:"detail,omitempty"`
}

func report(t testing.TB, figure string, value float64, unit, detail string) {
	t.Helper()
	t.Logf("%s: %.4g %s (%s)", figure, value, unit, detail)
	out := os.Getenv("SCALE_OUT")
	if out == "" {
		return
	}
	line, err := json.Marshal(scaleFigure{Figure: figure, Value: value, Unit: unit, Detail: detail})
	require.NoError(t, err)
	f, err := os.OpenFile(out, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	require.NoError(t, err)
	defer f.Close()
	_, err = f.Write(append(line, '\n'))
	require.NoError(t, err)
}

// storeCalls is the sum of drayage_store_calls_total over the nodes.
func storeCalls(t testing.TB, nodes ...*hostNode) float64 {
	var sum float64
	for _, n := range nodes {
		sum += metricstest.Get(t, "http://"+n.metricsAddr+"/metrics").Total("drayage_store_calls_total")
	}
	return sum
}

// percentile is the q-quantile of d (nearest rank).
func percentile(d []time.Duration, q float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// pullTransfer is how long the transfer of the node's last pull of name took, from its
// log ("pull done").
func pullTransfer(t testing.TB, n *hostNode, name string) time.Duration {
	t.Helper()
	re := regexp.MustCompile(`msg="pull done" volume=` + regexp.QuoteMeta(name) + ` .* transfer=(\S+)`)
	var took time.Duration
	for _, l := range strings.Split(n.logText(), "\n") {
		if m := re.FindStringSubmatch(l); m != nil {
			d, err := time.ParseDuration(m[1])
			require.NoError(t, err)
			took = d
		}
	}
	require.NotZero(t, took, "no pull of %s in %s's log:\n%s", name, n.name, n.logText())
	return took
}

// BenchmarkScaleMounts: the cluster store calls one Mount makes (every node's, counted
// by drayage_store_calls_total) for a local idle volume, a volume mounted again, one
// pulled from another node and a replica promoted after its owner died; the latency of
// SCALE_MOUNTS (1,000) Mounts of a local idle volume through the plugin socket; and the
// time a remote Mount of a SCALE_REMOTE_MIB (1,024) MiB volume spends beyond its pull.
func BenchmarkScaleMounts(b *testing.B) {
	etcd := storetest.StartEtcd(b, storetest.ServerOptions{})
	nodes := startHostCluster(b, etcd.URL, []string{"scale-a", "scale-b", "scale-c"})
	a, src, owner := nodes[0], nodes[1], nodes[2]
	mount := func(n *hostNode, name, id string) time.Duration {
		t0 := time.Now()
		n.must(b, "Mount", map[string]any{"Name": name, "ID": id})
		return time.Since(t0)
	}
	unmount := func(n *hostNode, name, id string) { n.must(b, "Unmount", map[string]any{"Name": name, "ID": id}) }
	counted := func(f func()) float64 {
		before := storeCalls(b, nodes...)
		f()
		return storeCalls(b, nodes...) - before
	}

	a.create(b, "idle", "x", nil)
	report(b, "mount.calls.local-idle", counted(func() { mount(a, "idle", "c1") }), "calls", "a volume held here, not mounted")
	report(b, "mount.calls.local-again", counted(func() { mount(a, "idle", "c2") }), "calls", "a second container mounts it")
	unmount(a, "idle", "c2")
	unmount(a, "idle", "c1")

	rounds := envInt("SCALE_MOUNTS", 1000)
	lat := make([]time.Duration, 0, rounds)
	var calls float64
	for i := range rounds {
		before := storeCalls(b, a)
		lat = append(lat, mount(a, "idle", "lat"+strconv.Itoa(i)))
		calls += storeCalls(b, a) - before
		unmount(a, "idle", "lat"+strconv.Itoa(i))
	}
	detail := fmt.Sprintf("%d Mounts of an idle local volume through the plugin socket, etcd on loopback", rounds)
	report(b, "mount.latency.local-p50", ms(percentile(lat, 0.5)), "ms", detail)
	report(b, "mount.latency.local-p99", ms(percentile(lat, 0.99)), "ms", detail)
	report(b, "mount.calls.local-mean", calls/float64(rounds), "calls", detail)

	mib := envInt("SCALE_REMOTE_MIB", 1024)
	src.must(b, "Create", map[string]any{"Name": "remote"})
	f, err := os.Create(filepath.Join(src.data("remote"), "blob"))
	require.NoError(b, err)
	require.NoError(b, f.Truncate(0))
	buf := make([]byte, 1<<20)
	for i := range mib {
		buf[0], buf[1] = byte(i), byte(i>>8) // no two MiB alike
		_, err := f.Write(buf)
		require.NoError(b, err)
	}
	require.NoError(b, f.Close())
	var total time.Duration
	remoteCalls := counted(func() { total = mount(a, "remote", "r1") })
	took := pullTransfer(b, a, "remote")
	report(b, "mount.calls.remote-pull", remoteCalls, "calls", fmt.Sprintf("a %d MiB volume pulled from another node", mib))
	report(b, "mount.remote-beyond-pull", ms(total-took), "ms",
		fmt.Sprintf("Mount took %v, its transfer %v (%d MiB)", total.Round(time.Millisecond), took.Round(time.Millisecond), mib))
	unmount(a, "remote", "r1")

	// A replicated volume whose owner dies: the Mount on the replica's node promotes it.
	owner.create(b, "promoted", "before the crash", map[string]string{"replicas": "2", "replica-nodes": "scale-a"})
	eventually(b, timeout, "the replica on scale-a to be in sync", func() bool {
		info, err := tryInspect(a.root, "promoted")
		return err == nil && len(info.Replicas) == 1 && info.Replicas[0].State == volume.ReplicaReady
	})
	owner.kill(9)
	eventually(b, timeout, "scale-a to see scale-c dead", func() bool { return nodeList(b, a.root)["scale-c"].State == "dead" })
	report(b, "mount.calls.promotion", counted(func() { mount(a, "promoted", "p1") }), "calls", "the owner is dead; its replica here is promoted")
	got, err := os.ReadFile(filepath.Join(a.data("promoted"), "table"))
	require.NoError(b, err)
	require.Equal(b, "before the crash", string(got))
	unmount(a, "promoted", "p1")
}

