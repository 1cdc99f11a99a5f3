package main

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/progress"
)

// fakeView records what it is shown.
type fakeView struct {
	mu       sync.Mutex
	shown    []progress.Transfer
	finished []bool
}

func (v *fakeView) Update(p progress.Transfer) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.shown = append(v.shown, p)
}

func (v *fakeView) Finish(ok bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.finished = append(v.finished, ok)
}

func TestWatchShowsEveryProgressPolledAndSkipsTheRest(t *testing.T) {
	p1 := progress.Transfer{From: "node-a", To: "node-b", Counts: progress.Counts{Bytes: 1, Total: 10}}
	p2 := progress.Transfer{From: "node-a", To: "node-b", Counts: progress.Counts{Bytes: 7, Total: 10}}
	polls := []func() (*progress.Transfer, error){
		func() (*progress.Transfer, error) { return nil, nil }, // not started yet
		func() (*progress.Transfer, error) { return &p1, nil },
		func() (*progress.Transfer, error) { return nil, errors.New("daemon busy") },
		func() (*progress.Transfer, error) { return &p2, nil },
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	poll := func(context.Context) (*progress.Transfer, error) {
		if n == len(polls)-1 {
			cancel()
		}
		p, err := polls[min(n, len(polls)-1)]()
		n++
		return p, err
	}
	view := &fakeView{}
	watchProgress(ctx, poll, view, time.Millisecond)
	assert.Equal(t, []progress.Transfer{p1, p2}, view.shown)
}

func TestBarShowsBytesRateAndTimeLeft(t *testing.T) {
	var out bytes.Buffer
	bar := newBarView(&out)
	bar.Update(progress.Transfer{Kind: progress.KindMove, From: "node-a", To: "node-b"})
	assert.Contains(t, out.String(), "node-a → node-b: comparing files")

	out.Reset()
	bar.Update(progress.Transfer{Kind: progress.KindMove, From: "node-a", To: "node-b", Counts: progress.Counts{Bytes: 41 << 20, Total: 100 << 20, TotalFiles: 3}})
	time.Sleep(150 * time.Millisecond) // past the bar's throttle
	bar.Update(progress.Transfer{Kind: progress.KindMove, From: "node-a", To: "node-b", Counts: progress.Counts{Bytes: 42 << 20, Total: 100 << 20, TotalFiles: 3}})
	s := out.String()
	assert.Contains(t, s, "node-a → node-b")
	assert.NotContains(t, s, "comparing")
	assert.Contains(t, s, "42%")
	assert.Contains(t, s, "/100 MiB")
	assert.Contains(t, s, "MiB/s", "the rate")
	assert.Regexp(t, `\[[0-9smh]+:[0-9smh]+\]`, s, "time spent and left")

	bar.Update(progress.Transfer{Kind: progress.KindCopy, Copy: "db2", From: "node-a", To: "node-b", Counts: progress.Counts{Bytes: 1, Total: 5}})
	assert.Contains(t, out.String(), "node-a → node-b as db2")
	bar.Finish(true)
}

func TestNoBarWhenTheOutputIsNotATerminal(t *testing.T) {
	var out bytes.Buffer
	polled := false
	res, err := withProgress(context.Background(), &out,
		func(context.Context) (*progress.Transfer, error) { polled = true; return nil, nil },
		func(context.Context) (int, error) { return 7, nil })
	require.NoError(t, err)
	assert.Equal(t, 7, res)
	assert.False(t, polled)
	assert.Empty(t, out.String())
}
