package volume

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/progress"
)

const gib = 1 << 30

// pulling sets up node-a holding "db" and node-b whose pulls wait at a gate that has
// reported 41%, 2.1 of 5.0 GiB.
func pulling(t *testing.T) (a, b *Manager, fa, fb *fixture, p *fakePuller, g *gate) {
	ctx := context.Background()
	a, b, fa, fb, p = twoNodes(t)
	require.NoError(t, a.Create(ctx, "db", nil))
	require.NoError(t, os.WriteFile(filepath.Join(fa.root, "volumes", "db", "data", "table"), []byte("rows"), 0o644))
	g = newGate(progress.Counts{Bytes: 21 * gib / 10, Total: 5 * gib, Files: 3, TotalFiles: 7})
	p.gate = g
	return a, b, fa, fb, p, g
}

// mountWithin mounts with a budget, as the plugin does.
func mountWithin(m *Manager, budget time.Duration, id string) (string, time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	start := time.Now()
	mp, err := m.Mount(ctx, "db", id)
	return mp, time.Since(start), err
}

func TestMountAnswersWithProgressBeforeItsBudgetEndsAndThePullGoesOn(t *testing.T) {
	ctx := context.Background()
	a, b, fa, _, _, g := pulling(t)

	_, took, err := mountWithin(b, 400*time.Millisecond, "c1")
	require.ErrorIs(t, err, ErrPulling)
	assert.Equal(t, `volume "db" is still being pulled from node "node-a" to node "node-b": 41%, 2.1 of 5.0 GiB; it continues in the background: start the container again in a moment`, err.Error())
	assert.Less(t, took, 400*time.Millisecond, "answered before the budget ended")
	<-g.started

	// The pull holds no lock while it runs: Get answers at once, on both nodes, with the
	// progress from the cluster store.
	for _, m := range []*Manager{a, b} {
		short, cancel := context.WithTimeout(ctx, time.Second)
		info, err := m.Get(short, "db")
		cancel()
		require.NoError(t, err)
		assert.Equal(t, cluster.StateMigrating, info.State)
		assert.Equal(t, "node-a", info.Node)
		require.NotNil(t, info.Progress)
		p := *info.Progress
		assert.Equal(t, progress.Transfer{Volume: "db", Kind: progress.KindMove, From: "node-a", To: "node-b",
			Counts: progress.Counts{Bytes: 21 * gib / 10, Total: 5 * gib, Files: 3, TotalFiles: 7}},
			progress.Transfer{Volume: p.Volume, Kind: p.Kind, From: p.From, To: p.To, Counts: p.Counts})
		assert.WithinDuration(t, time.Now(), p.Started, 5*time.Second)
		assert.Positive(t, p.Rate())
		assert.Regexp(t, `^41% \(2\.1 of 5\.0 GiB\) from node-a, [0-9.]+ [KMGT]?i?B/s$`, p.String())
	}
	err = b.Remove(ctx, "db")
	require.ErrorIs(t, err, ErrInUse)
	assert.Equal(t, `volume "db" is moving to node "node-b" right now; retry when it is done`, err.Error())

	g.open <- nil // the pull completes with no Mount waiting
	require.Eventually(t, func() bool {
		e, err := fa.reg.Get(ctx, "db")
		return err == nil && e.Volume.Owner == "node-b"
	}, 5*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool {
		e, _ := fa.reg.Get(ctx, "db")
		return e.Claim == nil
	}, 5*time.Second, 10*time.Millisecond, "no claim is left behind for a Mount that stopped waiting")

	p, err := fa.reg.Progress(ctx, "db")
	require.NoError(t, err)
	assert.Nil(t, p, "the progress record is gone with the pull")
	info, err := a.Get(ctx, "db")
	require.NoError(t, err)
	assert.Nil(t, info.Progress)

	mp, took, err := mountWithin(b, 5*time.Second, "c1")
	require.NoError(t, err, "the retry mounts at once")
	assert.Less(t, took, time.Second)
	assert.NotEmpty(t, mp)
	assert.Empty(t, g.started, "nothing was pulled again")
	info, err = a.Get(ctx, "db")
	require.NoError(t, err)
	assert.Equal(t, StateMounted, info.State)
	assert.Equal(t, 1, info.Mounts)
	assert.Equal(t, uint64(2), info.Epoch)
}

func TestRetriedMountWaitsOnThePullAlreadyRunning(t *testing.T) {
	ctx := context.Background()
	a, b, _, fb, _, g := pulling(t)

	_, _, err := mountWithin(b, 300*time.Millisecond, "c1")
	require.ErrorIs(t, err, ErrPulling)
	<-g.started

	type result struct {
		mp  string
		err error
	}
	done := make(chan result, 1)
	go func() {
		mp, _, err := mountWithin(b, 10*time.Second, "c1")
		done <- result{mp, err}
	}()
	select {
	case <-g.started:
		t.Fatal("the retry started a second pull")
	case r := <-done:
		t.Fatalf("the retry returned before the pull ended: %v", r.err)
	case <-time.After(300 * time.Millisecond):
	}
	g.open <- nil
	r := <-done
	require.NoError(t, r.err)
	got, err := os.ReadFile(filepath.Join(fb.mounter.Source(r.mp), "table"))
	require.NoError(t, err)
	assert.Equal(t, "rows", string(got))
	info, err := a.Get(ctx, "db")
	require.NoError(t, err)
	assert.Equal(t, "node-b", info.Node)
	assert.Equal(t, StateMounted, info.State)
	assert.Equal(t, 1, info.Mounts)
}

func TestFailedPullIsToldToTheNextMountThenItStartsAgain(t *testing.T) {
	ctx := context.Background()
	_, b, fa, _, p, g := pulling(t)

	// Failure with a Mount waiting: that Mount hears it.
	done := make(chan error, 1)
	go func() { _, _, err := mountWithin(b, 10*time.Second, "c1"); done <- err }()
	<-g.started
	g.open <- errors.New("connection reset")
	err := <-done
	require.Error(t, err)
	assert.NotErrorIs(t, err, ErrPulling)
	assert.Contains(t, err.Error(), `volume "db": pulling it from node "node-a" failed: connection reset; it stays on node "node-a", and a retry resumes from what arrived`)

	// Failure with nobody waiting: the next Mount hears it; the one after starts again.
	_, _, err = mountWithin(b, 300*time.Millisecond, "c1")
	require.ErrorIs(t, err, ErrPulling)
	<-g.started
	g.open <- errors.New("connection reset")
	require.Eventually(t, func() bool {
		e, err := fa.reg.Get(ctx, "db")
		return err == nil && e.Claim == nil
	}, 5*time.Second, 10*time.Millisecond, "the failed pull released its claim")
	e, err := fa.reg.Get(ctx, "db")
	require.NoError(t, err)
	assert.Equal(t, "node-a", e.Volume.Owner)
	assert.Equal(t, uint64(1), e.Volume.Epoch)

	_, _, err = mountWithin(b, 5*time.Second, "c1")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "failed: connection reset")
	assert.Empty(t, g.started, "hearing the failure started nothing")

	p.mu.Lock()
	p.gate = nil
	p.mu.Unlock()
	_, _, err = mountWithin(b, 5*time.Second, "c1")
	require.NoError(t, err, "a new pull")
}

func TestStoppingTheDaemonStopsThePullAndLeavesTheVolumeWithItsOwner(t *testing.T) {
	ctx := context.Background()
	_, b, fa, fb, _, g := pulling(t)
	_, _, err := mountWithin(b, 300*time.Millisecond, "c1")
	require.ErrorIs(t, err, ErrPulling)
	<-g.started

	closed := make(chan struct{})
	go func() { b.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not stop the pull")
	}
	e, err := fa.reg.Get(ctx, "db")
	require.NoError(t, err)
	assert.Equal(t, "node-a", e.Volume.Owner)
	assert.Equal(t, uint64(1), e.Volume.Epoch)
	assert.Nil(t, e.Claim, "the migration claim was released")
	assert.FileExists(t, filepath.Join(fa.root, "volumes", "db", "data", "table"), "node-a's data is untouched")
	assert.NoDirExists(t, filepath.Join(fb.root, "volumes", "db"))

	_, _, err = mountWithin(b, time.Second, "c1")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "stopped while pulling it", "the next call hears why")
	_, _, err = mountWithin(b, time.Second, "c1")
	require.ErrorIs(t, err, ErrNotReady)
	assert.Contains(t, err.Error(), "drayage is stopping")
}

func TestMoveJoinsThePullAMountStarted(t *testing.T) {
	ctx := context.Background()
	_, b, fa, _, _, g := pulling(t)
	_, _, err := mountWithin(b, 300*time.Millisecond, "c1")
	require.ErrorIs(t, err, ErrPulling)
	<-g.started

	type result struct {
		res MoveResult
		err error
	}
	done := make(chan result, 1)
	go func() { res, err := b.Move(ctx, "db"); done <- result{res, err} }()
	time.Sleep(100 * time.Millisecond)
	g.open <- nil
	r := <-done
	require.NoError(t, r.err)
	assert.Equal(t, "node-a", r.res.From)
	assert.Equal(t, "node-b", r.res.To)
	assert.Equal(t, int64(4), r.res.Bytes)
	assert.Empty(t, g.started, "one pull for both")
	e, err := fa.reg.Get(ctx, "db")
	require.NoError(t, err)
	assert.Equal(t, "node-b", e.Volume.Owner)
	assert.Nil(t, e.Claim, "moved, not mounted")

	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	_, err = b.Move(short, "db")
	require.NoError(t, err, "already here")
}

func TestMoveWhoseCallerLeavesGoesOnInTheBackground(t *testing.T) {
	ctx := context.Background()
	_, b, fa, _, _, g := pulling(t)
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	_, err := b.Move(short, "db")
	require.ErrorIs(t, err, ErrPulling)
	assert.Contains(t, err.Error(), "it continues in the background: see how far it is with 'drayage volume inspect db'")
	<-g.started
	g.open <- nil
	require.Eventually(t, func() bool {
		e, err := fa.reg.Get(ctx, "db")
		return err == nil && e.Volume.Owner == "node-b" && e.Claim == nil
	}, 5*time.Second, 10*time.Millisecond)
}
