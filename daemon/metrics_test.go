package daemon

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/cluster/identity"
	"github.com/drayage/drayage/daemon/metrics/metricstest"
)

// freePort returns a TCP port that is free, with the next one free too (the embedded
// store's peer port).
func freePort(t *testing.T) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		p := l.Addr().(*net.TCPAddr).Port
		next, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+1))
		l.Close()
		if err == nil {
			next.Close()
			return p
		}
	}
	t.Fatal("no two free ports in a row")
	return 0
}

// runDaemon runs a daemon until the test ends.
func runDaemon(t *testing.T, cfg Config, log *slog.Logger) *Daemon {
	t.Helper()
	d, err := New(cfg, log)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-errc)
	})
	return d
}

func testConfig(t *testing.T, name string) Config {
	root := t.TempDir()
	return Config{
		Name: name, Root: root, MountTimeout: 25 * time.Second, Version: "test",
		Store: "embedded", EmbeddedAddr: fmt.Sprintf("127.0.0.1:%d", freePort(t)), LeaseTTL: 5 * time.Second,
		TLSDir: filepath.Join(root, "no-certificate"), Advertise: "127.0.0.1", Cluster: "test",
		GossipPort: freePort(t), ControlPort: freePort(t), DataPort: freePort(t), ProbeInterval: 200 * time.Millisecond,
		MetricsAddr: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
	}
}

func TestMetricsAreServedOnlyWhileTheDaemonRuns(t *testing.T) {
	cfg := testConfig(t, "node-a")
	url := "http://" + cfg.MetricsAddr + "/metrics"
	d, err := New(cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- d.Run(ctx) }()

	require.Eventually(t, func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	}, 10*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool { return metricstest.Get(t, url).Has("drayage_volumes") }, 20*time.Second, 50*time.Millisecond,
		"volumes are counted once the volume manager is ready")
	require.NoError(t, d.Volumes().Create(ctx, "v", nil))
	s := metricstest.Get(t, url)
	assert.Equal(t, 1.0, s.Value("drayage_volumes", "state", "idle"))
	assert.Equal(t, 1.0, s.Value("drayage_build_info", "node", "node-a", "version", "test"))
	assert.True(t, s.Has("drayage_store_errors_total", "op", "txn"))
	assert.Zero(t, s.Total("drayage_store_errors_total"))
	assert.False(t, s.Has("drayage_cluster_members"), "a node running alone has no gossip")
	assert.True(t, s.Has("go_goroutines"), "the Go runtime's metrics too")

	cancel()
	require.NoError(t, <-errc)
	_, err = http.Get(url)
	require.Error(t, err, "the endpoint closes with the daemon")
}

func TestMetricsAreOffUnlessAnAddressIsSet(t *testing.T) {
	cfg := testConfig(t, "node-a")
	off := cfg.MetricsAddr
	cfg.MetricsAddr = ""
	d := runDaemon(t, cfg, slog.New(slog.DiscardHandler))
	require.Eventually(t, func() bool { _, err := d.Volumes().List(context.Background()); return err == nil }, 20*time.Second, 50*time.Millisecond)
	_, err := http.Get("http://" + off + "/metrics")
	require.Error(t, err, "nothing listens")
	cfg.MetricsAddr = "7794"
	_, err = New(cfg, slog.New(slog.DiscardHandler))
	require.ErrorContains(t, err, "want HOST:PORT")
}

// The metrics port once suggested was the embedded store's peer port: such a setting is
// refused at once, and a store port taken by another process stops the daemon at once
// with what to do, instead of retrying for ever.
func TestPortsTakenFromTheEmbeddedStoreAreSaidAtOnce(t *testing.T) {
	cfg := testConfig(t, "node-a")
	host, port, err := net.SplitHostPort(cfg.EmbeddedAddr)
	require.NoError(t, err)
	n, err := strconv.Atoi(port)
	require.NoError(t, err)
	cfg.MetricsAddr = net.JoinHostPort(host, strconv.Itoa(n+1))
	_, err = New(cfg, slog.New(slog.DiscardHandler))
	require.ErrorContains(t, err, fmt.Sprintf("port %d is the embedded store's", n+1))

	cfg = testConfig(t, "node-a")
	taken, err := net.Listen("tcp", cfg.EmbeddedAddr)
	require.NoError(t, err)
	defer taken.Close()
	d, err := New(cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	errc := make(chan error, 1)
	go func() { errc <- d.Run(context.Background()) }()
	select {
	case err := <-errc:
		require.ErrorContains(t, err, "another process listens on that port or the next")
		assert.Contains(t, err.Error(), "DRAYAGE_EMBEDDED_ADDR")
	case <-time.After(30 * time.Second):
		t.Fatal("the daemon keeps retrying a port another process holds")
	}
}

func TestTwoNodesCountAVolumeMovedBetweenThem(t *testing.T) {
	ctx := context.Background()
	pki := t.TempDir()
	ca, err := identity.NewCA("test")
	require.NoError(t, err)
	key, err := identity.NewGossipKey()
	require.NoError(t, err)
	ca2 := testConfig(t, "node-a")
	cb := testConfig(t, "node-b")
	for _, c := range []*Config{&ca2, &cb} {
		c.TLSDir = filepath.Join(pki, c.Name)
		require.NoError(t, ca.WriteNode(c.TLSDir, identity.NodeSpec{Name: c.Name, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}, key))
	}
	// node-a's embedded store serves mutual TLS: node-b reaches it with its TLS dir's files.
	cb.Store = "etcd://" + ca2.EmbeddedAddr
	cb.StoreCA, cb.StoreCert, cb.StoreKey = filepath.Join(cb.TLSDir, identity.CAFile), filepath.Join(cb.TLSDir, identity.NodeCertFile),
		filepath.Join(cb.TLSDir, identity.NodeKeyFile)
	cb.Join = []string{fmt.Sprintf("127.0.0.1:%d", ca2.GossipPort)}
	a := runDaemon(t, ca2, slog.New(slog.DiscardHandler))
	b := runDaemon(t, cb, slog.New(slog.DiscardHandler))
	urlA, urlB := "http://"+ca2.MetricsAddr+"/metrics", "http://"+cb.MetricsAddr+"/metrics"
	for _, url := range []string{urlA, urlB} {
		require.Eventually(t, func() bool {
			resp, err := http.Get(url)
			if err != nil {
				return false
			}
			resp.Body.Close()
			return metricstest.Get(t, url).Value("drayage_cluster_members", "state", "alive") == 2
		}, 30*time.Second, 50*time.Millisecond, "%s sees both nodes alive", url)
	}

	require.NoError(t, a.Volumes().Create(ctx, "v", nil))
	data := filepath.Join(ca2.Root, "volumes", "v", "data")
	var total int64
	for i, size := range []int{1 << 20, 4096, 1} {
		b := make([]byte, size)
		_, _ = rand.Read(b)
		require.NoError(t, os.WriteFile(filepath.Join(data, fmt.Sprintf("f%d", i)), b, 0o644))
		total += int64(size)
	}
	_, err = b.Volumes().Move(ctx, "v")
	require.NoError(t, err)

	sa, sb := metricstest.Get(t, urlA), metricstest.Get(t, urlB)
	assert.Equal(t, 1.0, sb.Value("drayage_transfers_completed_total", "role", "receive"))
	assert.Equal(t, float64(total), sb.Value("drayage_transfer_bytes_total", "direction", "received"))
	assert.Equal(t, 3.0, sb.Value("drayage_transfer_files_total", "direction", "received"))
	assert.Equal(t, 1.0, sb.Value("drayage_volumes", "state", "idle"), "the volume is on node-b now")
	assert.Equal(t, 1.0, sa.Value("drayage_transfers_completed_total", "role", "send"))
	assert.Equal(t, float64(total), sa.Value("drayage_transfer_bytes_total", "direction", "sent"))
	assert.Equal(t, 3.0, sa.Value("drayage_transfer_files_total", "direction", "sent"))
	assert.Zero(t, sa.Value("drayage_transfers_started_total", "role", "receive"))
	assert.Zero(t, sb.Total("drayage_store_errors_total")+sa.Total("drayage_store_errors_total"))
	assert.True(t, sa.Has("drayage_gossip_health_score"))
}
