package transfer

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/drayage/drayage/daemon/peers"
)

// Close ends what a sender serves when its node stops: a transfer streaming to a
// receiver that reads, one whose receiver stopped reading, one never started, and the
// files opened and hashed ahead of them. It returns once every goroutine the sender
// started has ended (its data connections are slow to close), without waiting for any
// idle or stale timeout.
func TestCloseEndsEveryTransferAndWaitsForWhatItStarted(t *testing.T) {
	ids := testIdentities(t, "node-a", "node-b")
	a := newMetricsNode(t, "node-a")
	src := filepath.Join(t.TempDir(), "src")
	sizes := map[string]int{"0-big": 16 << 20}
	for i := range 2 * readAheadFiles { // more than are opened ahead: the opener waits
		sizes[fmt.Sprintf("small/%03d", i)] = 100
	}
	writeDataset(t, src, sizes)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	data := slowClose{l}
	auth := func(context.Context, string, string, uint64) (string, error) { return src, nil }
	srv := NewServer(ids["node-a"], auth, data.Addr().String(), slog.New(slog.DiscardHandler))
	srv.Metrics = a.m
	srv.Cap = Wire{RateLimit: 4 << 20} // the reading stream waits on the limit too
	served := make(chan error, 1)
	go func() { served <- srv.ServeData(data) }()
	g := peers.NewServer(ids["node-a"], nil, slog.New(slog.DiscardHandler))
	g.Register(srv.ServiceDesc())
	ctl, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = g.Serve(ctl) }()
	t.Cleanup(g.Stop)
	conn, err := peers.Dial(ids["node-b"], "node-a", ctl.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })

	ctx := context.Background()
	var streaming, idle openResponse
	require.NoError(t, conn.Invoke(ctx, "/drayage.Transfer/Open", &openRequest{Volume: "v", Epoch: 2, Version: protocolVersion}, &streaming))
	require.NoError(t, conn.Invoke(ctx, "/drayage.Transfer/Open", &openRequest{Volume: "v", Epoch: 2, Version: protocolVersion}, &idle))
	entries, err := decodeManifest(streaming.Manifest)
	require.NoError(t, err)
	var files []uint32
	for i, e := range entries {
		if e.Kind == kindFile {
			files = append(files, uint32(i))
		}
	}
	// Every file but the last is wanted; the last is hashed by the sender meanwhile.
	require.NoError(t, conn.Invoke(ctx, "/drayage.Transfer/Want", &wantRequest{Transfer: streaming.Transfer, Indexes: files[:len(files)-1]}, &empty{}))
	stream := func() net.Conn {
		c, err := tls.Dial("tcp", streaming.Data, ids["node-b"].ClientConfig("node-a"))
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		_, err = c.Write([]byte(streaming.Transfer))
		require.NoError(t, err)
		return c
	}
	reading, stalled := stream(), stream()
	_ = stalled // never read: its sender blocks on a full connection
	read := make(chan int64, 1)
	go func() { n, _ := io.Copy(io.Discard, reading); read <- n }()
	require.Eventually(t, func() bool {
		s := srv.Sending()
		return len(s) == 2 && s[0].Bytes+s[1].Bytes > 0
	}, 10*time.Second, 10*time.Millisecond, "the streams send")

	closed := make(chan error, 1)
	go func() { closed <- srv.Close() }()
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("Close did not return: it waits for something it did not end")
	}
	require.ErrorIs(t, <-served, net.ErrClosed, "ServeData returns once the sender is closed")
	for _, g := range goroutines() {
		for _, f := range []string{"transfer.(*Server)", "transfer.(*source)", "transfer.forEach", "transfer.walk", "transfer.closeOnDone"} {
			assert.NotContains(t, g, f, "a goroutine the sender started outlives Close")
		}
	}
	assert.Empty(t, srv.Sending())
	assert.Less(t, <-read, int64(16<<20), "the reading stream was cut before its end")
	assert.Equal(t, 2.0, failed(a.scrape(t), "send", "canceled"), "each transfer ended counts once")

	err = conn.Invoke(ctx, "/drayage.Transfer/Open", &openRequest{Volume: "v", Epoch: 2}, &idle)
	assert.Equal(t, codes.Unavailable, status.Code(err), "a closed sender refuses new transfers: %v", err)
	assert.True(t, strings.Contains(err.Error(), "shutting down"), err.Error())
	assert.NoError(t, srv.Close(), "Close may be called again")
	_, statErr := os.Stat(IndexPath(src))
	assert.NoError(t, statErr, "the hashes known when it closed are stored for the next transfer")
}

// slowClose accepts connections that take a while to close, like those to a peer far
// away: whoever waits for a stream to end waits for its connection to close too.
type slowClose struct{ net.Listener }

func (l slowClose) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return slowConn{c}, nil
}

type slowConn struct{ net.Conn }

func (c slowConn) Close() error {
	time.Sleep(200 * time.Millisecond)
	return c.Conn.Close()
}
