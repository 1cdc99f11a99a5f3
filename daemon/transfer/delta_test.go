package transfer

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
