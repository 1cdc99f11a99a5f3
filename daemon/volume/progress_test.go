package volume

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/progress"
)

func TestReceivingListsThePullWhileItRunsWithItsProgress(t *testing.T) {
	a, b, _, _, _, g := pulling(t)
	assert.Empty(t, b.Receiving(), "nothing moves yet")

	_, _, err := mountWithin(b, 300*time.Millisecond, "c1")
	require.ErrorIs(t, err, ErrPulling)
	<-g.started
	got := b.Receiving()
	require.Len(t, got, 1)
	assert.Equal(t, "db", got[0].Volume)
	assert.Equal(t, progress.KindMove, got[0].Kind)
	assert.Equal(t, "node-a", got[0].From)
	assert.Equal(t, int64(21*gib/10), got[0].Bytes)
	assert.Equal(t, int64(5*gib), got[0].Total)
	assert.Empty(t, a.Receiving(), "the sender receives nothing")

	g.open <- nil
	require.Eventually(t, func() bool { return len(b.Receiving()) == 0 }, 5*time.Second, 10*time.Millisecond,
		"a finished pull is no longer listed")
}
