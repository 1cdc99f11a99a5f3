package protocol_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/protocol"
)

func TestRangesMeetOrSayWhichNodeToUpgrade(t *testing.T) {
	v, err := protocol.Range{1, 2}.Common("a", "b", protocol.Range{2, 3})
	require.NoError(t, err)
	assert.Equal(t, 2, v, "the newest both speak")

	_, err = protocol.Range{1, 1}.Common("old", "new", protocol.Range{2, 3})
	require.ErrorIs(t, err, protocol.ErrIncompatible)
	assert.Equal(t, `the nodes speak no protocol version in common: node "old" speaks protocol 1 and node "new" speaks 2-3; upgrade node "old" (or run the same release on both)`, err.Error())
	_, err = protocol.Range{3, 4}.Common("new", "old", protocol.Range{1, 2})
	assert.Contains(t, err.Error(), `upgrade node "old"`)
}

func TestARangeReadsAsItIsWritten(t *testing.T) {
	for _, r := range []protocol.Range{{1, 1}, {1, 2}, {7, 9}} {
		back, err := protocol.Parse(r.String())
		require.NoError(t, err)
		assert.Equal(t, r, back)
	}
	r, err := protocol.Parse("")
	require.NoError(t, err)
	assert.Equal(t, protocol.Range{1, 1}, r, "a node that says nothing speaks version 1")
	for _, bad := range []string{"x", "2-1", "0", "1-", "-1"} {
		_, err := protocol.Parse(bad)
		require.ErrorIs(t, err, protocol.ErrBadRange, bad)
	}
	assert.Equal(t, protocol.Range{protocol.Oldest, protocol.Newest}, protocol.Own())
}
