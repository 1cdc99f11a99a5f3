package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/cluster/consulstore"
	"github.com/drayage/drayage/cluster/etcdstore"
	"github.com/drayage/drayage/cluster/identity"
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
	re := regexp.MustCompile(`msg="pull done" .*\bvolume=` + regexp.QuoteMeta(name) + ` .* transfer=(\S+)`)
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
	// counted is the store calls the nodes made while f ran. A scrape of the metrics
	// makes a call of its own (it reads the replica records), which lands in one window
	// or the next: the local counts are taken over 50 Mounts at once, so that it weighs
	// 0.02 a Mount.
	counted := func(f func(), on ...*hostNode) float64 {
		before := storeCalls(b, on...)
		f()
		return storeCalls(b, on...) - before
	}
	const batch = 50
	a.create(b, "idle", "x", nil)
	mount(a, "idle", "first")
	again := counted(func() {
		for i := range batch {
			mount(a, "idle", "again"+strconv.Itoa(i))
		}
	}, a) / batch
	unmounts := counted(func() {
		for i := range batch {
			unmount(a, "idle", "again"+strconv.Itoa(i))
		}
	}, a) / batch
	unmount(a, "idle", "first")
	cycles := counted(func() {
		for i := range batch {
			mount(a, "idle", "cycle"+strconv.Itoa(i))
			unmount(a, "idle", "cycle"+strconv.Itoa(i))
		}
	}, a) / batch
	report(b, "mount.calls.local-idle", cycles-unmounts, "calls", fmt.Sprintf("a volume held here, not mounted (%d Mounts; an Unmount makes %.2g)", batch, unmounts))
	report(b, "mount.calls.local-again", again, "calls", fmt.Sprintf("a volume held here and mounted already (%d Mounts)", batch))

	rounds := envInt("SCALE_MOUNTS", 1000)
	lat := make([]time.Duration, 0, rounds)
	for i := range rounds {
		lat = append(lat, mount(a, "idle", "lat"+strconv.Itoa(i)))
		unmount(a, "idle", "lat"+strconv.Itoa(i))
	}
	detail := fmt.Sprintf("%d Mounts of an idle local volume through the plugin socket, etcd on loopback", rounds)
	report(b, "mount.latency.local-p50", ms(percentile(lat, 0.5)), "ms", detail)
	report(b, "mount.latency.local-p99", ms(percentile(lat, 0.99)), "ms", detail)
	floor := mountFloor(b, etcd.Addr, a.root, rounds)
	report(b, "mount.latency.floor-p50", ms(percentile(floor, 0.5)), "ms", "one etcd write and one record written durably on this disk, in the same run")
	report(b, "mount.latency.floor-p99", ms(percentile(floor, 0.99)), "ms", "the same")
	report(b, "mount.latency.local-p99-vs-floor", float64(percentile(lat, 0.99))/float64(percentile(floor, 0.99)), "x", "a Mount's p99 over the floor's")

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
	remoteCalls := counted(func() { total = mount(a, "remote", "r1") }, nodes...)
	took := pullTransfer(b, a, "remote")
	report(b, "mount.calls.remote-pull", remoteCalls, "calls", fmt.Sprintf("a %d MiB volume pulled from another node (both nodes' calls)", mib))
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
	report(b, "mount.calls.promotion", counted(func() { mount(a, "promoted", "p1") }, a, src), "calls", "the owner is dead; its replica here is promoted")
	got, err := os.ReadFile(filepath.Join(a.data("promoted"), "table"))
	require.NoError(b, err)
	require.Equal(b, "before the crash", string(got))
	unmount(a, "promoted", "p1")
}

// mountFloor times what a Mount of a volume held here must wait for whatever drayage
// does, rounds times: the claim's write to the store (one etcd transaction: its WAL
// fsync) and the volume's record on this node's disk (write, fsync, rename, fsync of
// the directory).
func mountFloor(t testing.TB, etcdAddr, dir string, rounds int) []time.Duration {
	t.Helper()
	ctx := context.Background()
	store, err := etcdstore.Open(ctx, etcdstore.Options{Endpoints: []string{etcdAddr}})
	require.NoError(t, err)
	defer store.Close()
	dir = filepath.Join(dir, "floor")
	require.NoError(t, os.MkdirAll(dir, 0o700))
	defer os.RemoveAll(dir)
	record := []byte(`{"name":"idle","created":"2026-12-03T10:00:00Z","mounts":{"c1":1},"epoch":1}`)
	out := make([]time.Duration, 0, rounds)
	for i := range rounds {
		t0 := time.Now()
		_, err := store.Txn(ctx, nil, []cluster.Op{cluster.Put("floor/claim", []byte(strconv.Itoa(i)))})
		require.NoError(t, err)
		tmp := filepath.Join(dir, "record.tmp")
		f, err := os.Create(tmp)
		require.NoError(t, err)
		_, err = f.Write(record)
		require.NoError(t, err)
		require.NoError(t, f.Sync())
		require.NoError(t, f.Close())
		require.NoError(t, os.Rename(tmp, filepath.Join(dir, "record")))
		d, err := os.Open(dir)
		require.NoError(t, err)
		require.NoError(t, d.Sync())
		require.NoError(t, d.Close())
		out = append(out, time.Since(t0))
	}
	return out
}

// BenchmarkScaleVolumes: SCALE_VOLUMES (100,000) volume records in each store of
// SCALE_STORES (etcd consul embedded), SCALE_LOCAL (1,000) of them held by the node
// measured, the rest by 1,000 other nodes: the node's List (docker volume ls) and Get
// (docker volume inspect) through the plugin socket, its idle RSS and goroutines after a
// restart, its peak RSS, and the store's size on disk.
func BenchmarkScaleVolumes(b *testing.B) {
	for _, kind := range strings.Fields(envString("SCALE_STORES", "etcd consul embedded")) {
		b.Run(kind, func(b *testing.B) { scaleVolumes(b, storeKind(kind)) })
	}
}

func scaleVolumes(b *testing.B, kind storeKind) {
	total, local := envInt("SCALE_VOLUMES", 100000), envInt("SCALE_LOCAL", 1000)
	base := b.TempDir()
	pki := filepath.Join(base, "pki")
	run(b, binary, "tls", "init", "--dir", pki, "--nodes", "vols-a", "--ip", "vols-a=127.0.0.1")
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", storetest.FreePort(b))
	var storeURL, storeAddr, storeDir string
	extra := []string{"--metrics-addr", metricsAddr}
	switch kind {
	case etcdStore:
		s := storetest.StartEtcd(b, storetest.ServerOptions{})
		storeURL, storeAddr, storeDir = s.URL, s.Addr, s.Dir()
	case consulStore:
		s := storetest.StartConsul(b, storetest.ServerOptions{})
		storeURL, storeAddr, storeDir = s.URL, s.Addr, s.Dir()
	case embeddedStore:
		storeURL, storeAddr, storeDir = "embedded", freeAddr(), filepath.Join(base, "vols-a", "store")
		extra = append(extra, "--embedded-addr", storeAddr)
	}
	n := &hostNode{netNode: startNetNode(b, "vols-a", base, filepath.Join(pki, "vols-a"), storeURL, 0, "scale", extra...), metricsAddr: metricsAddr}
	scrape := func() metricstest.Scrape { return metricstest.Get(b, "http://"+metricsAddr+"/metrics") }
	idle := scrape()
	report(b, "volumes."+string(kind)+".goroutines-empty", idle.Total("go_goroutines"), "", "the node with no volumes")

	t0 := time.Now()
	createRecords(b, kind, storeAddr, filepath.Join(pki, "vols-a"), total-local)
	createLocal(b, n, local)
	b.Logf("%d records and %d local volumes made in %v", total-local, local, time.Since(t0).Round(time.Second))

	n.kill(syscall.SIGTERM)
	n.probe = []string{"volume", "inspect", "loc0000"} // not volume ls: that would describe all
	n.start()
	time.Sleep(20 * time.Second) // idle
	s := scrape()
	detail := fmt.Sprintf("%d volumes known, %d held here, idle after a restart", total, local)
	report(b, "volumes."+string(kind)+".rss", s.Total("process_resident_memory_bytes")/(1<<20), "MiB", detail)
	report(b, "volumes."+string(kind)+".goroutines", s.Total("go_goroutines"), "", detail)

	var lists []time.Duration
	for range 5 {
		t0 := time.Now()
		out := n.must(b, "List", struct{}{})
		lists = append(lists, time.Since(t0))
		require.Len(b, out["Volumes"], total, "docker volume ls lists every volume")
	}
	report(b, "volumes."+string(kind)+".list", percentile(lists, 0.5).Seconds(), "s", fmt.Sprintf("median of 5 Lists of %d volumes", total))
	s = scrape()
	report(b, "volumes."+string(kind)+".rss-after-list", s.Total("process_resident_memory_bytes")/(1<<20), "MiB", "right after the Lists")
	t0 = time.Now()
	out := n.drayage(b, "volume", "ls")
	report(b, "volumes."+string(kind)+".cli-ls", time.Since(t0).Seconds(), "s", "drayage volume ls, which describes every volume (state, node, replicas)")
	require.Len(b, strings.Split(strings.TrimSpace(out), "\n"), total+1, "a header and every volume")
	var gets []time.Duration
	for i := range 200 {
		name := fmt.Sprintf("rec%06d", i*(total-local)/200)
		if i%2 == 1 {
			name = fmt.Sprintf("loc%04d", i*local/200)
		}
		t0 := time.Now()
		out := n.must(b, "Get", map[string]string{"Name": name})
		gets = append(gets, time.Since(t0))
		require.Equal(b, name, out["Volume"].(map[string]any)["Name"])
	}
	report(b, "volumes."+string(kind)+".inspect-p99", ms(percentile(gets, 0.99)), "ms", "200 Gets, half of volumes held here (sized), half elsewhere")
	report(b, "volumes."+string(kind)+".peak-rss", float64(peakRSSKiB(b, n.cmd.Process.Pid))/1024, "MiB", "the node's peak since its restart, Lists included")
	report(b, "volumes."+string(kind)+".store-size", float64(dirSize(b, storeDir))/(1<<20), "MiB", fmt.Sprintf("the store's data dir with %d volumes", total))
}

// createRecords writes count volume records straight into the store, owned by 1,000
// other nodes, as a large cluster's would be.
func createRecords(t testing.TB, kind storeKind, addr, tlsDir string, count int) {
	t.Helper()
	ctx := context.Background()
	var store cluster.Store
	var err error
	switch kind {
	case consulStore:
		store, err = consulstore.Open(ctx, consulstore.Options{Address: addr})
	case etcdStore:
		store, err = etcdstore.Open(ctx, etcdstore.Options{Endpoints: []string{addr}})
	case embeddedStore:
		var id *identity.Identity
		if id, err = identity.Load(tlsDir, "vols-a"); err == nil {
			store, err = etcdstore.Open(ctx, etcdstore.Options{Endpoints: []string{addr}, TLS: id.MemberClientConfig()})
		}
	}
	require.NoError(t, err)
	defer store.Close()
	reg := cluster.NewRegistry(store, cluster.DefaultPrefix)
	names := make(chan int)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range names {
				v := cluster.Volume{Name: fmt.Sprintf("rec%06d", i), Owner: fmt.Sprintf("node-%04d", i%1000), Epoch: 1 + uint64(i%7),
					Size: int64(i) << 12, Created: time.Now().UTC(), Root: strings.Repeat("ab", 32)}
				if i%10 == 0 {
					v.Options = map[string]string{"replicas": "2"}
				}
				if _, _, err := reg.Create(ctx, v); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for i := range count {
		select {
		case names <- i:
		case err := <-errs:
			t.Fatal(err)
		}
	}
	close(names)
	wg.Wait()
	close(errs)
	require.NoError(t, <-errs)
}

// createLocal makes count volumes on the node through the plugin API, 8 at a time.
func createLocal(t testing.TB, n *hostNode, count int) {
	t.Helper()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < count; i += 8 {
				n.must(t, "Create", map[string]any{"Name": fmt.Sprintf("loc%04d", i)})
			}
		}()
	}
	wg.Wait()
}

func envString(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func peakRSSKiB(t testing.TB, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kib, err := strconv.Atoi(strings.Fields(v)[0])
			require.NoError(t, err)
			return kib
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

func dirSize(t testing.TB, dir string) int64 {
	t.Helper()
	var size int64
	require.NoError(t, filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if fi, err := d.Info(); err == nil && !d.IsDir() {
			size += fi.Size()
		}
		return nil
	}))
	return size
}
