package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/drayage/drayage/progress"
)

// pollEvery is how often a command that waits for a transfer asks for its progress.
const pollEvery = 300 * time.Millisecond

// progressView shows the progress of a transfer as it comes.
type progressView interface {
	// Update shows p; it is called from one goroutine.
	Update(p progress.Transfer)
	// Finish ends the display: ok says whether the transfer succeeded.
	Finish(ok bool)
}

// watchProgress asks poll for the progress every interval and shows it in view, until ctx
// ends. A poll with nothing to show (not started yet, or over) or that fails is skipped:
// the command's own result is what counts.
func watchProgress(ctx context.Context, poll func(context.Context) (*progress.Transfer, error), view progressView, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if p, err := poll(ctx); err == nil && p != nil {
			view.Update(*p)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			// Both may be ready at once, and select picks either: the caller
			// stopping wins, so nothing is shown after it.
			if ctx.Err() != nil {
				return
			}
		}
	}
}

// withProgress runs a transfer, showing its progress on out if out is a terminal: poll
// reads it from the daemon while run waits for the result.
func withProgress[T any](ctx context.Context, out io.Writer, poll func(context.Context) (*progress.Transfer, error), run func(context.Context) (T, error)) (T, error) {
	if !isTerminal(out) {
		return run(ctx)
	}
	view := newBarView(out)
	watchCtx, stop := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() { defer close(watched); watchProgress(watchCtx, poll, view, pollEvery) }()
	res, err := run(ctx)
	stop()
	<-watched
	view.Finish(err == nil)
	return res, err
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// barView draws a progress bar (github.com/schollz/progressbar/v3) with bytes, rate
// and time left; a spinner while the nodes compare their files.
type barView struct {
	out   io.Writer
	bar   *progressbar.ProgressBar
	total int64 // the bar's maximum; -1 for the spinner
}

func newBarView(out io.Writer) *barView { return &barView{out: out} }

func (b *barView) Update(p progress.Transfer) {
	total := p.Total
	if total == 0 && p.TotalFiles == 0 {
		total = -1 // not known yet
	}
	if b.bar == nil || total != b.total {
		if b.bar != nil {
			_ = b.bar.Clear()
		}
		b.bar = progressbar.NewOptions64(max(total, -1),
			progressbar.OptionSetWriter(b.out),
			progressbar.OptionSetDescription(describe(p, total < 0)),
			progressbar.OptionShowBytes(true),
			progressbar.OptionUseIECUnits(true),
			progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionSetRenderBlankState(true),
			progressbar.OptionSpinnerType(14),
			progressbar.OptionSetSpinnerChangeInterval(0), // turned by Update: no goroutine of its own
		)
		b.total = total
	}
	if total >= 0 {
		_ = b.bar.Set64(p.Bytes)
	} else {
		_ = b.bar.Add(1) // turns the spinner
	}
}

// Finish clears the bar: the line that follows (the result, or the error) says how it
// ended.
func (b *barView) Finish(bool) {
	if b.bar == nil {
		return
	}
	_ = b.bar.Exit()
	_ = b.bar.Clear()
}

// describe is the label in front of the bar.
func describe(p progress.Transfer, comparing bool) string {
	what := fmt.Sprintf("%s → %s", p.From, p.To)
	if p.Kind == progress.KindCopy && p.Copy != "" {
		what += " as " + p.Copy
	}
	if comparing {
		return what + ": comparing files"
	}
	return what
}
