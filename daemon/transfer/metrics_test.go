package transfer

import (
	"context"
	"crypto/rand"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/drayage/drayage/daemon/metrics"
	"github.com/drayage/drayage/daemon/metrics/metricstest"
	"github.com/drayage/drayage/daemon/peers"
)

// metricsNode is one node's metrics, served over HTTP as the daemon serves them.
type metricsNode struct {
	m   *metrics.Metrics
	url string
}

func newMetricsNode(t *testing.T, name string) metricsNode {
	t.Helper()
	m := metrics.New(metrics.Options{Node: name, Version: "test"})
	srv := httptest.NewServer(m.Handler())
	t.Cleanup(srv.Close)
	return metricsNode{m: m, url: srv.URL + "/metrics"}
}

func (n metricsNode) scrape(t *testing.T) metricstest.Scrape {
	t.Helper()
	return metricstest.Get(t, n.url)
}

// writeDataset writes files of the given sizes (random content: no holes) and returns
// their total size.
func writeDataset(t *testing.T, dir string, sizes map[string]int) int64 {
	t.Helper()
	var total int64
	for name, size := range sizes {
		p := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		b := make([]byte, size)
		_, _ = rand.Read(b)
		require.NoError(t, os.WriteFile(p, b, 0o644))
		total += int64(size)
	}
	return total
}

func failed(s metricstest.Scrape, role, reason string) float64 {
	return s.Value("drayage_transfers_failed_total", "role", role, "reason", reason)
}

func TestMetricsCountExactlyWhatCrossesTheWireDuringAndAfterAPull(t *testing.T) {
	ids := testIdentities(t, "node-a", "node-b")
	a, b := newMetricsNode(t, "node-a"), newMetricsNode(t, "node-b")
	src := filepath.Join(t.TempDir(), "src")
	sizes := map[string]int{"big.bin": 3 << 20, "dir/small.txt": 1234, "dir/sub/mid.bin": 200_001, "empty": 0}
	total := writeDataset(t, src, sizes)
	require.NoError(t, os.Symlink("big.bin", filepath.Join(src, "link"))) // not a file: no content
	// 1.5 MiB/s: the pull takes about two seconds, long enough to scrape it midway.
	ctl := serveVolume(t, ids["node-a"], src, func(s *Server) { s.Metrics = a.m; s.Cap = Wire{RateLimit: 3 << 19} })
	staging := filepath.Join(t.TempDir(), "staging")
	pull := func() <-chan error {
		done := make(chan error, 1)
		go func() {
			_, err := Pull(context.Background(), PullOptions{Identity: ids["node-b"], From: "node-a", Control: ctl,
				Volume: "v", Epoch: 2, Staging: staging, Metrics: b.m})
			done <- err
		}()
		return done
	}

	before := b.scrape(t)
	assert.Zero(t, before.Value("drayage_transfers_started_total", "role", "receive"))
	assert.True(t, before.Has("drayage_transfers_failed_total", "role", "receive", "reason", "corrupt"), "failure series exist before any failure")

	done := pull()
	// Midway: the transfer has started on both sides, some bytes have arrived, not all.
	var mid metricstest.Scrape
	require.Eventually(t, func() bool {
		mid = b.scrape(t)
		return mid.Value("drayage_transfer_bytes_total", "direction", "received") > 0
	}, 10*time.Second, 20*time.Millisecond)
	assert.Equal(t, 1.0, mid.Value("drayage_transfers_started_total", "role", "receive"))
	assert.Zero(t, mid.Value("drayage_transfers_completed_total", "role", "receive"), "still running")
	assert.Less(t, mid.Value("drayage_transfer_bytes_total", "direction", "received"), float64(total))
	assert.Equal(t, 1.0, a.scrape(t).Value("drayage_transfers_started_total", "role", "send"))
	require.NoError(t, <-done)

	for _, n := range []struct {
		node      metricsNode
		role, dir string
	}{{b, "receive", "received"}, {a, "send", "sent"}} {
		s := n.node.scrape(t)
		assert.Equal(t, 1.0, s.Value("drayage_transfers_started_total", "role", n.role), n.role)
		assert.Equal(t, 1.0, s.Value("drayage_transfers_completed_total", "role", n.role), n.role)
		assert.Zero(t, s.Total("drayage_transfers_failed_total", "role", n.role), n.role)
		assert.Equal(t, float64(total), s.Value("drayage_transfer_bytes_total", "direction", n.dir), n.role)
		assert.Equal(t, float64(len(sizes)), s.Value("drayage_transfer_files_total", "direction", n.dir), n.role)
		assert.Equal(t, uint64(1), s.Count("drayage_transfer_duration_seconds", "role", n.role, "result", "completed"), n.role)
		assert.Greater(t, s.Sum("drayage_transfer_duration_seconds", "role", n.role, "result", "completed"), 1.0, n.role)
	}

	// A delta: one file changed, the staging tree from the first pull is reused; only
	// the changed file crosses.
	changed := make([]byte, 4321)
	_, _ = rand.Read(changed)
	require.NoError(t, os.WriteFile(filepath.Join(src, "dir", "small.txt"), changed, 0o644))
	require.NoError(t, <-pull())
	for _, n := range []struct {
		node      metricsNode
		role, dir string
	}{{b, "receive", "received"}, {a, "send", "sent"}} {
		s := n.node.scrape(t)
		assert.Equal(t, 2.0, s.Value("drayage_transfers_completed_total", "role", n.role), n.role)
		assert.Equal(t, float64(total+int64(len(changed))), s.Value("drayage_transfer_bytes_total", "direction", n.dir), n.role)
		assert.Equal(t, float64(len(sizes)+1), s.Value("drayage_transfer_files_total", "direction", n.dir), n.role)
	}
}

func TestMetricsCountFailedTransfersByReason(t *testing.T) {
	ids := testIdentities(t, "node-a", "node-b", "node-c")
	a, b := newMetricsNode(t, "node-a"), newMetricsNode(t, "node-b")
	src := filepath.Join(t.TempDir(), "src")
	writeDataset(t, src, map[string]int{"1-first": 1 << 20, "2-second": 1000})
	ctl := serveVolume(t, ids["node-a"], src, func(s *Server) { s.Metrics = a.m; s.Cap = Wire{RateLimit: 1 << 20} })
	opts := func() PullOptions {
		return PullOptions{Identity: ids["node-b"], From: "node-a", Control: ctl, Volume: "v", Epoch: 2,
			Staging: filepath.Join(t.TempDir(), "staging"), Streams: 1, Metrics: b.m}
	}

	// An epoch that is not the claim's: the sender refuses, its claim lost.
	o := opts()
	o.Epoch = 1
	_, err := Pull(context.Background(), o)
	require.ErrorContains(t, err, "at epoch 1")
	assert.Equal(t, 1.0, failed(b.scrape(t), "receive", "refused"))
	assert.Equal(t, 1.0, failed(a.scrape(t), "send", "claim_lost"))

	// Not the node the volume moves to: refused on both sides.
	o = opts()
	o.Identity = ids["node-c"]
	_, err = Pull(context.Background(), o)
	require.Error(t, err)
	assert.Equal(t, 2.0, failed(b.scrape(t), "receive", "refused"))
	assert.Equal(t, 1.0, failed(a.scrape(t), "send", "refused"))

	// Nobody listens at the sender's address.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	require.NoError(t, l.Close())
	o = opts()
	o.Control = l.Addr().String()
	_, err = Pull(context.Background(), o)
	require.Error(t, err)
	assert.Equal(t, 1.0, failed(b.scrape(t), "receive", "peer_down"))

	// A file changes while the volume is sent: the sender gives up on it, the receiver
	// aborts the transfer.
	done := make(chan error, 1)
	go func() { _, err := Pull(context.Background(), opts()); done <- err }()
	require.Eventually(t, func() bool {
		return b.scrape(t).Value("drayage_transfer_bytes_total", "direction", "received") > 0
	}, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, os.WriteFile(filepath.Join(src, "2-second"), []byte("shorter"), 0o644))
	require.ErrorContains(t, <-done, "changed while it was being sent")
	sb, sa := b.scrape(t), a.scrape(t)
	assert.Equal(t, 1.0, failed(sb, "receive", "aborted"))
	assert.Equal(t, 1.0, failed(sa, "send", "aborted"))
	assert.Equal(t, 1.0, sb.Value("drayage_transfer_files_total", "direction", "received"), "the first file arrived whole")

	// This node stops waiting.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = Pull(ctx, opts())
	require.Error(t, err)
	sb = b.scrape(t)
	assert.Equal(t, 1.0, failed(sb, "receive", "canceled"))

	assert.Equal(t, 5.0, sb.Value("drayage_transfers_started_total", "role", "receive"))
	assert.Zero(t, sb.Value("drayage_transfers_completed_total", "role", "receive"))
	assert.Equal(t, 5.0, sb.Total("drayage_transfers_failed_total", "role", "receive"), "every start ended in one failure")
	assert.Equal(t, uint64(5), sb.Count("drayage_transfer_duration_seconds", "role", "receive", "result", "failed"))
}

func TestATransferWhoseReceiverVanishesIsDroppedAsPeerDown(t *testing.T) {
	ids := testIdentities(t, "node-a", "node-b")
	a := newMetricsNode(t, "node-a")
	src := filepath.Join(t.TempDir(), "src")
	writeDataset(t, src, map[string]int{"f": 10})
	ctl := serveVolume(t, ids["node-a"], src, func(s *Server) { s.Metrics, s.StaleAfter = a.m, 200*time.Millisecond })

	// The receiver opens the transfer, then is never heard from again.
	conn, err := peers.Dial(ids["node-b"], "node-a", ctl)
	require.NoError(t, err)
	defer conn.Close()
	var open openResponse
	require.NoError(t, conn.Invoke(context.Background(), "/drayage.Transfer/Open", &openRequest{Volume: "v", Epoch: 2}, &open))
	require.Eventually(t, func() bool {
		return failed(a.scrape(t), "send", "peer_down") == 1
	}, 5*time.Second, 20*time.Millisecond)
	err = conn.Invoke(context.Background(), "/drayage.Transfer/Finish", &finishRequest{Transfer: open.Transfer, Abort: true}, &empty{})
	require.ErrorContains(t, err, "no transfer", "a dropped transfer is gone")
	assert.Zero(t, failed(a.scrape(t), "send", "aborted"), "and counted once")
}

func TestFailureReasonsOfPullErrors(t *testing.T) {
	ctx := context.Background()
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	for _, c := range []struct {
		ctx  context.Context
		err  error
		want string
	}{
		{ctx, ErrCorrupt, metrics.ReasonCorrupt},
		{ctx, ErrHostile, metrics.ReasonHostile},
		{canceled, unix.ECONNRESET, metrics.ReasonCanceled},
		{ctx, unix.ECONNRESET, metrics.ReasonPeerDown},
		{ctx, &failure{reason: metrics.ReasonAborted, err: os.ErrClosed}, metrics.ReasonAborted},
		{ctx, unix.ENOSPC, metrics.ReasonOther},
	} {
		assert.Equal(t, c.want, failureReason(c.ctx, c.err), "%v", c.err)
	}
}
