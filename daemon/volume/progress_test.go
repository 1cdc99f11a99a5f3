package volume

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestProgressReadsAsPeopleSayIt(t *testing.T) {
	p := Progress{Kind: KindMove, From: "node-a", To: "node-b", Bytes: 21 * gib / 10, Total: 5 * gib, Rate: 120 << 20}
	assert.Equal(t, "41% (2.1 of 5.0 GiB) from node-a, 120.0 MiB/s", p.String())
	assert.Equal(t, "41%, 2.1 of 5.0 GiB", p.Amount())
	assert.Equal(t, 41, p.Percent())

	assert.Equal(t, "comparing files with node node-a", Progress{From: "node-a"}.String())
	assert.Equal(t, "comparing files", Progress{From: "node-a"}.Amount())
	assert.Equal(t, "100% (512 of 512 B) from node-a", Progress{From: "node-a", Bytes: 512, Total: 512, TotalFiles: 1}.String())
	assert.Equal(t, "0%, 0 of 0 B", Progress{TotalFiles: 2}.Amount(), "only empty files to send")
	assert.Equal(t, "1.5 KiB", BytesUnit(1536))
	assert.Equal(t, "0.5 of 1.0 MiB", BytesOf(512<<10, 1<<20))
}

func TestProgressRateIsTheMeanSinceTheStart(t *testing.T) {
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	p := Progress{Bytes: 100 << 20, Started: start}.withRate(start.Add(10 * time.Second))
	assert.Equal(t, int64(10<<20), p.Rate)
	assert.Equal(t, start.Add(10*time.Second), p.Updated)
}

func TestReceivingListsThePullWhileItRunsWithItsProgress(t *testing.T) {
	a, b, _, _, _, g := pulling(t)
	assert.Empty(t, b.Receiving(), "nothing moves yet")

	_, _, err := mountWithin(b, 300*time.Millisecond, "c1")
	require.ErrorIs(t, err, ErrPulling)
	<-g.started
	got := b.Receiving()
	require.Len(t, got, 1)
	assert.Equal(t, "db", got[0].Volume)
	assert.Equal(t, KindMove, got[0].Kind)
	assert.Equal(t, "node-a", got[0].From)
	assert.Equal(t, int64(21*gib/10), got[0].Bytes)
	assert.Equal(t, int64(5*gib), got[0].Total)
	assert.Empty(t, a.Receiving(), "the sender receives nothing")

	g.open <- nil
	require.Eventually(t, func() bool { return len(b.Receiving()) == 0 }, 5*time.Second, 10*time.Millisecond,
		"a finished pull is no longer listed")
}
