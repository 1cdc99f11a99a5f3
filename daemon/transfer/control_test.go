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
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/daemon/peers"
)

func TestControlMessagesThatGrowWithTheVolumeTravelInBinary(t *testing.T) {
	var c peers.Codec
	open := &openResponse{Transfer: "0123abcd", Data: "10.0.0.1:7947", Wire: Wire{Compress: true, RateLimit: 5 << 20},
		Manifest: encodeManifest([]entry{{Path: ".", Kind: kindDir, Mode: 0o755}, {Path: "a", Kind: kindFile, Size: 3}})}
	b, err := c.Marshal(open)
	require.NoError(t, err)
	var gotOpen openResponse
	require.NoError(t, c.Unmarshal(b, &gotOpen))
	assert.Equal(t, *open, gotOpen)

	want := &wantRequest{Transfer: "0123abcd", Indexes: []uint32{0, 1, 127, 128, 1 << 31, 7}}
	b, err = c.Marshal(want)
	require.NoError(t, err)
	var gotWant wantRequest
	require.NoError(t, c.Unmarshal(b, &gotWant))
	assert.Equal(t, *want, gotWant, "indexes keep their order")

	// The other messages stay JSON.
	b, err = c.Marshal(&finishRequest{Transfer: "x", Abort: true})
	require.NoError(t, err)
	assert.JSONEq(t, `{"transfer":"x","abort":true}`, string(b))

	for _, bad := range [][]byte{nil, {0x80}, {0x05, '{', '}'}, {0x02, 'n', 'o'}} {
		assert.Error(t, c.Unmarshal(bad, &gotOpen), "open response %x", bad)
	}
	for _, bad := range [][]byte{nil, {0x80}, {0x03, 'a'}, {0x01, 'a', 0x80}, {0x01, 'a', 0xff, 0xff, 0xff, 0xff, 0x7f}} {
		assert.Error(t, c.Unmarshal(bad, &gotWant), "want request %x", bad)
	}
}

// FuzzWantRequest: no input may crash the decoder; what it accepts re-encodes to itself.
func FuzzWantRequest(f *testing.F) {
	b, _ := (&wantRequest{Transfer: "0123abcd", Indexes: []uint32{0, 300, 1 << 31}}).MarshalBinary()
	f.Add(b)
	f.Add([]byte{0x01, 'a', 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r wantRequest
		if r.UnmarshalBinary(b) != nil {
			return
		}
		again, err := r.MarshalBinary()
		require.NoError(t, err)
		var r2 wantRequest
		require.NoError(t, r2.UnmarshalBinary(again))
		assert.Equal(t, r, r2)
	})
}

// Files are opened ahead of the streams; a transfer that ends before sending them all
// (the receiver aborted or went away) closes every one.
func TestSourceClosesTheFilesItOpenedAhead(t *testing.T) {
	dir := t.TempDir()
	for i := range 2 * readAheadFiles {
		require.NoError(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d", i)), []byte("x"), 0o644))
	}
	before := openFiles(t)
	src, err := newSource(t.Context(), dir, reading{})
	require.NoError(t, err)
	var all []uint32
	for i, e := range src.Manifest() {
		if e.Kind == kindFile {
			all = append(all, uint32(i))
		}
	}
	require.NoError(t, src.Want(all))
	assert.Error(t, src.Want(all), "Want is given once")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	assert.ErrorIs(t, src.Send(ctx, io.Discard), context.Canceled)
	require.NoError(t, src.Close())
	assert.Equal(t, before, openFiles(t))
}

func openFiles(t *testing.T) int {
	t.Helper()
	des, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(des)
}

// The wanted list grows with the volume: for two million files it is some 6 MB, over
// gRPC's default limit of 4 MiB. It crosses the production control server over mutual
// TLS, as a pull sends it.
func TestAWantForTwoMillionFilesCrossesTheControlServer(t *testing.T) {
	ids := testIdentities(t, "node-a", "node-b")
	src := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644))
	data, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer data.Close()
	auth := func(context.Context, string, string, uint64) (string, error) { return src, nil }
	srv := NewServer(ids["node-a"], auth, data.Addr().String(), slog.New(slog.DiscardHandler))
	defer srv.Close()
	ps := peers.NewServer(ids["node-a"], nil, slog.New(slog.DiscardHandler))
	ps.Register(srv.ServiceDesc())
	ctl, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = ps.Serve(ctl) }()
	defer ps.Stop()

	conn, err := peers.Dial(ids["node-b"], "node-a", ctl.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	ctx := context.Background()
	var open openResponse
	require.NoError(t, conn.Invoke(ctx, "/drayage.Transfer/Open", &openRequest{Volume: "v", Epoch: 2}, &open))
	want := &wantRequest{Transfer: open.Transfer, Indexes: make([]uint32, 2_000_000)}
	for i := range want.Indexes {
		want.Indexes[i] = uint32(i)
	}
	b, err := want.MarshalBinary()
	require.NoError(t, err)
	require.Greater(t, len(b), 4<<20, "the list is over gRPC's default limit")
	require.NoError(t, conn.Invoke(ctx, "/drayage.Transfer/Want", want, &empty{}), "a Want of %d bytes", len(b))
	require.NoError(t, conn.Invoke(ctx, "/drayage.Transfer/Finish", &finishRequest{Transfer: open.Transfer, Abort: true}, &empty{}))
}

// A receiver of protocol 1 (before the root hash covered every file) sends no version:
// the sender answers with protocol 1 and its root hash covers only the files it sent.
func TestASenderSpeaksTheProtocolOfAnOlderReceiver(t *testing.T) {
	ids := testIdentities(t, "node-a", "node-b")
	src := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(src, "kept"), []byte("the receiver has it"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(src, "sent"), []byte("the receiver wants it"), 0o644))
	ctl := serveVolume(t, ids["node-a"], src)
	conn, err := peers.Dial(ids["node-b"], "node-a", ctl)
	require.NoError(t, err)
	defer conn.Close()
	ctx := context.Background()
	var open openResponse
	require.NoError(t, conn.Invoke(ctx, "/drayage.Transfer/Open", &openRequest{Volume: "v", Epoch: 2}, &open))
	assert.Equal(t, 1, open.Version, "the sender answers in protocol 1")
	entries, err := decodeManifest(open.Manifest)
	require.NoError(t, err)
	require.Equal(t, "sent", entries[2].Path)
	require.NoError(t, conn.Invoke(ctx, "/drayage.Transfer/Want", &wantRequest{Transfer: open.Transfer, Indexes: []uint32{2}}, &empty{}))
	c, err := tls.Dial("tcp", open.Data, ids["node-b"].ClientConfig("node-a"))
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write([]byte(open.Transfer))
	require.NoError(t, err)
	sink, err := openSink(filepath.Join(t.TempDir(), "staging"), entries, SinkOptions{})
	require.NoError(t, err)
	defer sink.Close()
	sink.send[1] = false // as if the receiver had it already
	require.NoError(t, sink.Receive(c))
	root := rootHashOf(entries, sink.hashes)
	require.NoError(t, conn.Invoke(ctx, "/drayage.Transfer/Finish", &finishRequest{Transfer: open.Transfer, RootHash: root[:]}, &empty{}),
		"the root hash of protocol 1 is accepted")
}
