package transfer

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCompressedPullKeepsEverything(t *testing.T) {
	ids := testIdentities(t, "node-a", "node-b")
	src := fidelityTree(t)
	ctl := serveVolume(t, ids["node-a"], src)
	staging := filepath.Join(t.TempDir(), "staging")
	_, err := Pull(context.Background(), PullOptions{Identity: ids["node-b"], From: "node-a", Control: ctl,
		Volume: "v", Epoch: 2, Staging: staging, Wire: Wire{Compress: true, RateLimit: 1 << 30}, Sink: SinkOptions{AllowPrivileged: true}})
	require.NoError(t, err)
	want, err := walkEntries(src)
	require.NoError(t, err)
	got, err := walkEntries(staging)
	require.NoError(t, err)
	assert.Equal(t, want, got)
}

// A zstd bomb: a few KiB that inflate to a GiB of zeros, for a file declared 5 bytes.
func TestCompressionBombIsStoppedByDeclaredSizes(t *testing.T) {
	staging, _ := hostileSetup(t)
	sink, err := openSink(staging, []entry{root, {Path: "f", Kind: kindFile, Mode: 0o644, Size: 5}}, SinkOptions{})
	require.NoError(t, err)
	defer sink.Close()
	var compressed bytes.Buffer
	zw, err := zstd.NewWriter(&compressed)
	require.NoError(t, err)
	fw := newFrameWriter(zw)
	require.NoError(t, fw.File(1, 5))
	zero := make([]byte, maxFrame)
	for range 1024 {
		require.NoError(t, fw.Write(frameData, zero))
	}
	require.NoError(t, zw.Close())
	t.Logf("bomb: %d bytes inflating to 1 GiB", compressed.Len())

	r, done, err := Wire{Compress: true}.receiverReader(&compressed)
	require.NoError(t, err)
	defer done()
	err = sink.Receive(r)
	require.ErrorIs(t, err, ErrHostile)
	assert.Contains(t, err.Error(), "more data than its declared 5 bytes")
	assert.NoFileExists(t, filepath.Join(staging, "f"))
}

func TestTheDaemonsCapLowersWhatTheReceiverAsks(t *testing.T) {
	assert.Equal(t, Wire{RateLimit: 10}, Wire{RateLimit: 100}.merge(Wire{RateLimit: 10}))
	assert.Equal(t, Wire{RateLimit: 10}, Wire{}.merge(Wire{RateLimit: 10}), "no limit asked: the cap applies")
	assert.Equal(t, Wire{RateLimit: 5, Compress: true}, Wire{RateLimit: 5, Compress: true}.merge(Wire{RateLimit: 10}))
	assert.Nil(t, Wire{}.limiter())
	assert.Equal(t, 1000.0, float64(Wire{RateLimit: 1000}.limiter().Limit()))
}
