package volume

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/daemon/metrics"
	"github.com/drayage/drayage/daemon/metrics/metricstest"
	"github.com/drayage/drayage/progress"
)

func TestMountsAreTimedAndVolumesCountedByState(t *testing.T) {
	ctx := context.Background()
	fa := newFixture(t)
	fb := newNode(t, "node-b", fa.reg)
	fb.metrics = metrics.New(metrics.Options{Node: "node-b"})
	a, b := fa.start(t), fb.start(t)
	b.cfg.Metrics.SetVolumeStates(b.LocalStates)
	srv := httptest.NewServer(fb.metrics.Handler())
	defer srv.Close()
	scrape := func() metricstest.Scrape { return metricstest.Get(t, srv.URL+"/metrics") }
	mounts := func(s metricstest.Scrape, result string) uint64 {
		return s.Count("drayage_mount_duration_seconds", "result", result)
	}
	volumes := func(s metricstest.Scrape) map[string]float64 {
		out := map[string]float64{}
		for _, st := range metrics.VolumeStates {
			out[st] = s.Value("drayage_volumes", "state", st)
		}
		return out
	}
	p := &fakePuller{managers: map[string]*Manager{"node-a": a, "node-b": b}, down: map[string]time.Time{}}
	g := newGate(progress.Counts{Bytes: 1, Total: 2, Files: 0, TotalFiles: 1})
	p.gate = g
	b.SetPuller(p)

	s := scrape()
	assert.Equal(t, map[string]float64{"mounted": 0, "idle": 0, "pulling": 0}, volumes(s))
	assert.Zero(t, mounts(s, "ok"))

	require.NoError(t, b.Create(ctx, "here", nil))
	require.NoError(t, b.Create(ctx, "idle", nil))
	_, err := b.Mount(ctx, "here", "c1")
	require.NoError(t, err)
	_, err = b.Mount(ctx, "missing", "c1")
	require.ErrorIs(t, err, ErrNotFound)
	s = scrape()
	assert.Equal(t, uint64(1), mounts(s, "ok"), "one Mount succeeded")
	assert.Equal(t, uint64(1), mounts(s, "error"), "one Mount failed")
	assert.Equal(t, map[string]float64{"mounted": 1, "idle": 1, "pulling": 0}, volumes(s))

	// A Mount of a volume held by node-a answers within its budget while the pull runs.
	require.NoError(t, a.Create(ctx, "db", nil))
	_, _, err = mountWithin(b, 300*time.Millisecond, "c2")
	require.ErrorIs(t, err, ErrPulling)
	<-g.started
	s = scrape()
	assert.Equal(t, uint64(1), mounts(s, "pulling"))
	assert.Less(t, s.Sum("drayage_mount_duration_seconds", "result", "pulling"), 0.3, "timed to its answer")
	assert.Equal(t, map[string]float64{"mounted": 1, "idle": 1, "pulling": 1}, volumes(s))

	g.open <- nil
	require.Eventually(t, func() bool { return volumes(scrape())["pulling"] == 0 }, 5*time.Second, 10*time.Millisecond)
	_, _, err = mountWithin(b, 5*time.Second, "c2")
	require.NoError(t, err)
	s = scrape()
	assert.Equal(t, uint64(2), mounts(s, "ok"))
	assert.Equal(t, map[string]float64{"mounted": 2, "idle": 1, "pulling": 0}, volumes(s))
}
