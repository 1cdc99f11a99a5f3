package transfer

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/drayage/drayage/cluster/identity"
	"github.com/drayage/drayage/daemon/peers"
)

// resources is what a process holds that a finished transfer must give back.
type resources struct{ goroutines, fds int }

func held(t *testing.T) resources {
	t.Helper()
	return resources{len(goroutines()), openFiles(t)}
}

// goroutines lists the stacks of the process's goroutines (not the runtime's own, which
// runtime.NumGoroutine counts while they run finalizers and cleanups).
func goroutines() []string {
	buf := make([]byte, 4<<20)
	return strings.Split(strings.TrimSpace(string(buf[:runtime.Stack(buf, true)])), "\n\n")
}

// settles waits until the process holds no more than before: an aborted transfer gives
// back every goroutine and descriptor it took.
func settles(t *testing.T, before resources, what string) {
	t.Helper()
	var now resources
	// A loop here, not require.Eventually: that runs its condition on a goroutine of its
	// own, which would count.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if now = held(t); now.goroutines <= before.goroutines && now.fds <= before.fds {
			return
		}
	}
	t.Fatalf("%s: %d goroutines and %d descriptors before, %d and %d after:\n%s",
		what, before.goroutines, before.fds, now.goroutines, now.fds, strings.Join(goroutines(), "\n\n"))
}

// silentDataServer accepts data streams as a sender would, with node's certificate, reads
// the transfer ID, and then sends nothing, never closing: a sender that hangs. stop
// closes it and every connection it holds.
func silentDataServer(t *testing.T, id *identity.Identity) (addr string, stop func()) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			raw, err := l.Accept()
			if err != nil {
				return
			}
			c := tls.Server(raw, id.ServerConfig(nil))
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go func() { _, _ = io.ReadFull(c, make([]byte, 32)) }()
		}
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			l.Close()
			<-done
			mu.Lock()
			defer mu.Unlock()
			for _, c := range conns {
				c.Close()
			}
		})
	}
	t.Cleanup(stop)
	return l.Addr().String(), stop
}

func TestASenderThatGoesSilentFailsThePullWithinTheIdleTimeout(t *testing.T) {
	ids := testIdentities(t, "node-a", "node-b")
	src := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(src, "f"), make([]byte, 1<<20), 0o644))
	silent, stop := silentDataServer(t, ids["node-a"])
	ctl, srv := serveVolumeLogging(t, ids["node-a"], src, slog.New(slog.DiscardHandler), func(s *Server) { s.data = silent })
	before := held(t)
	start := time.Now()
	_, err := Pull(context.Background(), PullOptions{Identity: ids["node-b"], From: "node-a", Control: ctl, Volume: "v", Epoch: 2,
		Staging: filepath.Join(t.TempDir(), "staging"), IdleTimeout: 500 * time.Millisecond})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `node "node-a" sent nothing on a data stream for 500ms (DRAYAGE_STREAM_TIMEOUT)`)
	assert.Less(t, time.Since(start), 20*time.Second, "the pull gave up on its own")
	assert.Empty(t, srv.Sending(), "the receiver aborted the transfer at the sender")
	stop() // what the silent sender itself holds
	settles(t, before, "a pull from a silent sender")
}

func TestAReceiverThatStopsReadingReleasesItsStreamAndTransfer(t *testing.T) {
	ids := testIdentities(t, "node-a", "node-b")
	src := t.TempDir()
	// More than the socket buffers hold, so that the sender's writes block.
	require.NoError(t, os.WriteFile(filepath.Join(src, "big"), make([]byte, 64<<20), 0o644))
	ctl, srv := serveVolumeLogging(t, ids["node-a"], src, slog.New(slog.DiscardHandler), func(s *Server) {
		s.IdleTimeout = 500 * time.Millisecond
		s.StaleAfter = time.Second
	})
	before := held(t)

	conn, err := peers.Dial(ids["node-b"], "node-a", ctl)
	require.NoError(t, err)
	ctx := context.Background()
	var open openResponse
	require.NoError(t, conn.Invoke(ctx, "/drayage.Transfer/Open", &openRequest{Volume: "v", Epoch: 2}, &open))
	require.NoError(t, conn.Invoke(ctx, "/drayage.Transfer/Want", &wantRequest{Transfer: open.Transfer, Indexes: []uint32{1}}, &empty{}))
	data, err := tls.Dial("tcp", open.Data, ids["node-b"].ClientConfig("node-a"))
	require.NoError(t, err)
	_, err = data.Write([]byte(open.Transfer))
	require.NoError(t, err)
	// Now the receiver goes silent: it holds the connection and reads nothing.
	require.Eventually(t, func() bool { return len(srv.Sending()) == 0 }, 20*time.Second, 20*time.Millisecond,
		"the sender drops the transfer of a receiver that stopped reading")
	data.Close()
	conn.Close()
	settles(t, before, "a transfer to a receiver that stopped reading")
}

func TestASenderRefusesTransfersBeyondItsLimit(t *testing.T) {
	ids := testIdentities(t, "node-a", "node-b")
	src := t.TempDir()
	ctl, srv := serveVolumeLogging(t, ids["node-a"], src, slog.New(slog.DiscardHandler), func(s *Server) { s.MaxTransfers = 1 })
	conn, err := peers.Dial(ids["node-b"], "node-a", ctl)
	require.NoError(t, err)
	defer conn.Close()
	ctx := context.Background()
	var first, second openResponse
	require.NoError(t, conn.Invoke(ctx, "/drayage.Transfer/Open", &openRequest{Volume: "v", Epoch: 2}, &first))
	err = conn.Invoke(ctx, "/drayage.Transfer/Open", &openRequest{Volume: "v", Epoch: 2}, &second)
	require.Error(t, err)
	assert.Equal(t, codes.ResourceExhausted, status.Code(err))
	assert.Contains(t, err.Error(), `node "node-a" is sending 1 volumes already, its limit (DRAYAGE_MAX_TRANSFERS)`)
	require.NoError(t, conn.Invoke(ctx, "/drayage.Transfer/Finish", &finishRequest{Transfer: first.Transfer, Abort: true}, &empty{}))
	require.NoError(t, conn.Invoke(ctx, "/drayage.Transfer/Open", &openRequest{Volume: "v", Epoch: 2}, &second), "a slot is free again")
	require.NoError(t, conn.Invoke(ctx, "/drayage.Transfer/Finish", &finishRequest{Transfer: second.Transfer, Abort: true}, &empty{}))
	assert.Empty(t, srv.Sending())
}

func TestDataConnectionsBeyondTheLimitAreClosedAtOnce(t *testing.T) {
	ids := testIdentities(t, "node-a", "node-b")
	src := t.TempDir()
	data, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := NewServer(ids["node-a"], nil, data.Addr().String(), slog.New(slog.DiscardHandler))
	srv.MaxConns = 2
	go func() { _ = srv.ServeData(data) }()
	defer srv.Close()
	_ = src
	// Two connections that never handshake hold both slots...
	var idle []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", data.Addr().String())
		require.NoError(t, err)
		idle = append(idle, c)
	}
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	// ...so a third is closed without a handshake.
	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", data.Addr().String())
		if err != nil {
			return false
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		_, err = c.Read(make([]byte, 1))
		return errors.Is(err, io.EOF)
	}, 10*time.Second, 50*time.Millisecond, "a connection beyond the limit is closed at once")
}

// Every way a pull can end early gives back what it took, at both ends: the receiver's
// streams and files, the sender's transfer, streams and opened files.
func TestEveryAbortedPullGivesBackItsGoroutinesAndDescriptors(t *testing.T) {
	ids := testIdentities(t, "node-a", "node-b", "node-c")
	src := filepath.Join(t.TempDir(), "src")
	require.NoError(t, os.MkdirAll(src, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(src, "1-first"), make([]byte, 1<<20), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(src, "2-second"), make([]byte, 1000), 0o644))
	ctl, srv := serveVolumeLogging(t, ids["node-a"], src, slog.New(slog.DiscardHandler), func(s *Server) { s.Cap = Wire{RateLimit: 1 << 20} })
	opts := func() PullOptions {
		return PullOptions{Identity: ids["node-b"], From: "node-a", Control: ctl, Volume: "v", Epoch: 2,
			Staging: filepath.Join(t.TempDir(), "staging"), Streams: 4}
	}
	before := held(t)
	aborted := func(what string, o PullOptions, during func()) {
		t.Helper()
		done := make(chan error, 1)
		go func() { _, err := Pull(context.Background(), o); done <- err }()
		if during != nil {
			during()
		}
		require.Error(t, <-done, what)
		assert.Empty(t, srv.Sending(), "%s: the sender dropped the transfer", what)
		settles(t, before, what)
	}
	o := opts()
	o.Epoch = 1
	aborted("a stale epoch", o, nil)
	o = opts()
	o.Identity = ids["node-c"]
	aborted("another node", o, nil)
	o = opts()
	o.Control = freeAddr(t)
	aborted("nobody listening", o, nil)
	o = opts()
	o.Streams = 1 // the second file waits for the first, 1 MiB at 1 MiB/s
	aborted("a file changed while sent", o, func() {
		time.Sleep(200 * time.Millisecond)
		require.NoError(t, os.WriteFile(filepath.Join(src, "2-second"), []byte("shorter"), 0o644))
	})
	require.NoError(t, os.WriteFile(filepath.Join(src, "2-second"), make([]byte, 1000), 0o644))
	o = opts()
	o.Sink.MaxBytes = 1000
	aborted("a volume above the limit", o, nil)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(200 * time.Millisecond); cancel() }()
	_, err := Pull(ctx, opts())
	require.Error(t, err)
	assert.Eventually(t, func() bool { return len(srv.Sending()) == 0 }, 10*time.Second, 20*time.Millisecond)
	settles(t, before, "a pull canceled midway")
}
