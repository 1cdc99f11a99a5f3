package transfer

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/progress"
)

// A large file changed in place travels as the chunks that changed, and arrives
// byte-identical, verified whole.
func TestALargeFileChangedInPlaceSendsOnlyItsChangedChunks(t *testing.T) {
	src, dst := t.TempDir(), filepath.Join(t.TempDir(), "staging")
	const size = 16 << 20
	data := make([]byte, size)
	_, _ = rand.Read(data)
	require.NoError(t, os.WriteFile(filepath.Join(src, "db"), data, 0o600))
	move(t, src, dst, 2) // the receiver's older copy

	// Ten scattered 4 KiB writes, one across a chunk boundary; and the file grows.
	for i := range 10 {
		off := i*(size/10) + 1000
		if i == 3 {
			off = 5*deltaChunk - 2048
		}
		_, _ = rand.Read(data[off : off+4096])
	}
	data = append(data, []byte("appended")...)
	require.NoError(t, os.WriteFile(filepath.Join(src, "db"), data, 0o600))

	source, sink := ends(t, src, dst, SinkOptions{})
	basis, err := sink.chunkBasis(t.Context(), sink.present)
	require.NoError(t, err)
	require.Len(t, basis, 1, "the changed large file is offered by chunks")
	require.NoError(t, source.setBasis(basis))
	sendAll(t, source, sink)
	assert.LessOrEqual(t, source.Bytes(), int64(12*deltaChunk), "only the chunks the writes touched, and the new tail")
	assert.Positive(t, source.Bytes())
	got, err := os.ReadFile(filepath.Join(dst, "db"))
	require.NoError(t, err)
	assert.Equal(t, data, got, "byte-identical")
	t.Logf("a %d-byte file with 10 writes of 4 KiB sent %d bytes", len(data), source.Bytes())

	// Shrunk: the chunks it kept travel as frameSame too.
	data = data[:size/2]
	require.NoError(t, os.WriteFile(filepath.Join(src, "db"), data, 0o600))
	source, sink = ends(t, src, dst, SinkOptions{})
	basis, err = sink.chunkBasis(t.Context(), sink.present)
	require.NoError(t, err)
	require.NoError(t, source.setBasis(basis))
	sendAll(t, source, sink)
	assert.Zero(t, source.Bytes())
	got, err = os.ReadFile(filepath.Join(dst, "db"))
	require.NoError(t, err)
	assert.Equal(t, data, got)
}

// A sender that skips a part the receiver did not offer is refused, and nothing of the
// file stays.
func TestASkippedPartTheReceiverDidNotOfferIsRefused(t *testing.T) {
	src, dst := t.TempDir(), filepath.Join(t.TempDir(), "staging")
	data := make([]byte, 2<<20)
	require.NoError(t, os.WriteFile(filepath.Join(src, "db"), data, 0o600))
	move(t, src, dst, 1)
	data[0] = 1
	require.NoError(t, os.WriteFile(filepath.Join(src, "db"), data, 0o600))
	source, sink := ends(t, src, dst, SinkOptions{})
	// The sender is told of chunks the receiver never offered.
	hashes, err := chunkHashesOf(filepath.Join(src, "db"))
	require.NoError(t, err)
	require.NoError(t, source.setBasis([]basisFile{{Index: 1, Hashes: hashes}}))
	require.NoError(t, source.Want(sink.Wanted()))
	server, client := tlsPairs(t, 1)
	go func() { _ = source.Send(t.Context(), server[0]) }()
	err = sink.Receive(client[0])
	require.ErrorIs(t, err, ErrHostile)
	assert.NoFileExists(t, filepath.Join(dst, "db"))
}

func chunkHashesOf(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	return chunkHashes(context.Background(), int(f.Fd()), fi.Size())
}

// A pull cut off in the middle of a large file resumes there: what arrived stays in
// staging as the basis of a delta, and the next attempt is sent the rest, then verifies
// the whole file.
func TestAPullCutInTheMiddleOfALargeFileResumesThere(t *testing.T) {
	ids := testIdentities(t, "node-a", "node-b")
	src := t.TempDir()
	const size = 32 << 20
	data := make([]byte, size)
	_, _ = rand.Read(data)
	require.NoError(t, os.WriteFile(filepath.Join(src, "big"), data, 0o600))
	ctl := serveVolume(t, ids["node-a"], src, func(s *Server) { s.Cap = Wire{RateLimit: 16 << 20} })
	staging := filepath.Join(t.TempDir(), "staging")
	opts := PullOptions{Identity: ids["node-b"], From: "node-a", Control: ctl, Volume: "v", Epoch: 2, Staging: staging}

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	cut := opts
	cut.Progress = func(p progress.Counts) {
		if p.Bytes > size/2 {
			cancel()
		}
	}
	_, err := Pull(ctx, cut)
	require.Error(t, err)
	fi, err := os.Stat(filepath.Join(staging, "big"))
	require.NoError(t, err, "what arrived stays")
	assert.Greater(t, fi.Size(), int64(size/4))

	res, err := Pull(t.Context(), opts)
	require.NoError(t, err)
	assert.Less(t, res.Bytes, int64(size*3/4), "only what had not arrived is sent")
	got, err := os.ReadFile(filepath.Join(staging, "big"))
	require.NoError(t, err)
	assert.Equal(t, data, got, "byte-identical, verified whole")
	t.Logf("%d bytes had arrived when the pull was cut; the next one sent %d of %d", fi.Size(), res.Bytes, size)
}

// A large file received is stored with its chunks' hashes, as a later delta's basis
// would read them; that delta offers them without reading the file.
func TestStoredChunkHashesAreOfferedWithoutReadingTheFile(t *testing.T) {
	src, dst := t.TempDir(), filepath.Join(t.TempDir(), "staging")
	data := make([]byte, 3<<20+100)
	_, _ = rand.Read(data)
	require.NoError(t, os.WriteFile(filepath.Join(src, "db"), data, 0o600))
	move(t, src, dst, 2)
	f, err := os.Open(filepath.Join(dst, "db"))
	require.NoError(t, err)
	defer f.Close()
	want, err := chunkHashes(t.Context(), int(f.Fd()), int64(len(data)))
	require.NoError(t, err)
	stored := loadIndex(IndexPath(dst))["db"]
	require.Equal(t, want, stored.chunks, "the hashes taken as the file arrived are those of its chunks")

	data[100] ^= 1
	require.NoError(t, os.WriteFile(filepath.Join(src, "db"), data, 0o600))
	_, sink := ends(t, src, dst, SinkOptions{})
	marker := bytes.Repeat([]byte{0xaa}, len(stored.chunks))
	h := sink.known["db"]
	h.chunks = marker
	sink.known["db"] = h
	basis, err := sink.chunkBasis(t.Context(), sink.present)
	require.NoError(t, err)
	require.Len(t, basis, 1)
	assert.Equal(t, marker, basis[0].Hashes, "the stored hashes, not a reading of the file")
}
