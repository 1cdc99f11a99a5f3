package transfer

import (
	"bytes"
	"encoding/binary"
	"runtime"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// allocated reports the bytes fn allocates.
func allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func TestAManifestThatLiesAboutItsCountAllocatesOnlyWhatItHolds(t *testing.T) {
	// A count that the input's length allows, followed by garbage: the decoder must fail
	// at the first entry having allocated little, not room for every entry declared (an
	// entry takes ten times its smallest encoding).
	const declared = 100_000
	b := binary.AppendUvarint([]byte{manifestVersion}, declared)
	b = append(b, bytes.Repeat([]byte{0xff}, declared*(minEntryBytes+1))...)
	var err error
	n := allocated(func() { _, err = decodeManifest(b) })
	require.ErrorIs(t, err, ErrHostile)
	assert.Less(t, n, uint64(len(b)), "decoding %d bytes allocated %d", len(b), n)
}

func TestAManifestCountBeyondItsBytesIsRefused(t *testing.T) {
	// Ten bytes per entry at least: one entry more than the bytes hold is a lie.
	b := binary.AppendUvarint([]byte{manifestVersion}, 3)
	b = append(b, make([]byte, 3*minEntryBytes-1)...)
	_, err := decodeManifest(b)
	require.ErrorIs(t, err, ErrHostile)
	assert.Contains(t, err.Error(), "declares 3 entries")
}

func TestSmallestEntriesDecode(t *testing.T) {
	// Entries of the smallest encoding are what the count's bound is made for: a
	// manifest of them is honest and must decode.
	entries := make([]entry, 100)
	b := encodeManifest(entries)
	require.Len(t, b, 2+100*minEntryBytes)
	got, err := decodeManifest(b)
	require.NoError(t, err)
	assert.Len(t, got, 100)
}

func TestAWantRequestAllocatesOnlyWhatItHolds(t *testing.T) {
	want := wantRequest{Transfer: "t"}
	for i := range 50_000 {
		want.Indexes = append(want.Indexes, uint32(i))
	}
	b, err := want.MarshalBinary()
	require.NoError(t, err)
	var got wantRequest
	require.NoError(t, got.UnmarshalBinary(b))
	assert.Equal(t, want.Indexes, got.Indexes)
	// A list cut short fails without first making room for the whole of it.
	var cut wantRequest
	junk := slices.Concat(b[:10], bytes.Repeat([]byte{0xff}, 1<<20))
	n := allocated(func() { err = cut.UnmarshalBinary(junk) })
	require.Error(t, err)
	assert.Less(t, n, uint64(len(junk)), "decoding %d bytes allocated %d", len(junk), n)
}
