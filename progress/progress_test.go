package progress

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const gib = 1 << 30

func TestProgressReadsAsPeopleSayIt(t *testing.T) {
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	p := Transfer{Kind: KindMove, From: "node-a", To: "node-b", Counts: Counts{Bytes: 21 * gib / 10, Total: 5 * gib},
		Started: start}
	p.Updated = start.Add(time.Duration(float64(p.Bytes) / float64(120<<20) * float64(time.Second)))
	assert.Equal(t, "41% (2.1 of 5.0 GiB) from node-a, 120.0 MiB/s", p.String())
	assert.Equal(t, "41%, 2.1 of 5.0 GiB", p.Amount())
	assert.Equal(t, 41, p.Percent())

	assert.Equal(t, "comparing files with node node-a", Transfer{From: "node-a"}.String())
	assert.Equal(t, "comparing files", Transfer{From: "node-a"}.Amount())
	assert.Equal(t, "100% (512 of 512 B) from node-a", Transfer{From: "node-a", Counts: Counts{Bytes: 512, Total: 512, TotalFiles: 1}}.String())
	assert.Equal(t, "0%, 0 of 0 B", Counts{TotalFiles: 2}.Amount(), "only empty files to send")
	assert.Equal(t, "1.5 KiB", BytesUnit(1536))
	assert.Equal(t, "0.5 of 1.0 MiB", BytesOf(512<<10, 1<<20))
}

func TestRateIsTheMeanFromStartToTheLastCount(t *testing.T) {
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	p := Transfer{Counts: Counts{Bytes: 100 << 20}, Started: start, Updated: start.Add(10 * time.Second)}
	assert.Equal(t, int64(10<<20), p.Rate())
	assert.Zero(t, Transfer{Counts: Counts{Bytes: 1}, Started: start, Updated: start}.Rate(), "no time has passed")
}

func TestCountsAreFlatInJSON(t *testing.T) {
	b, err := json.Marshal(Transfer{Volume: "db", Kind: KindCopy, Copy: "db2", From: "a", To: "b", Counts: Counts{Bytes: 1, Total: 2, Files: 3, TotalFiles: 4}})
	require.NoError(t, err)
	assert.JSONEq(t, `{"volume":"db","kind":"copy","copy":"db2","from":"a","to":"b","bytes":1,"total":2,"files":3,"total_files":4,
		"started":"0001-01-01T00:00:00Z","updated":"0001-01-01T00:00:00Z"}`, string(b))
}
