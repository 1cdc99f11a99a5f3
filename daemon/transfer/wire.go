package transfer

import (
	"context"
	"io"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/time/rate"
)

// Wire options of a transfer: zstd for slow links, and a bandwidth limit.
type Wire struct {
	// Compress wraps data streams in zstd.
	Compress bool `json:"compress,omitempty"`
	// RateLimit caps the transfer's content bytes per second over all its streams (0: none).
	RateLimit int64 `json:"rate_limit,omitempty"`
}

// merge applies the daemon's own cap to what the receiver asked for.
func (w Wire) merge(cap Wire) Wire {
	if cap.RateLimit > 0 && (w.RateLimit == 0 || cap.RateLimit < w.RateLimit) {
		w.RateLimit = cap.RateLimit
	}
	return w
}

// limiter returns a limiter shared by a transfer's streams, or nil for no limit.
func (w Wire) limiter() *rate.Limiter {
	if w.RateLimit <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(w.RateLimit), w.burst())
}

// burst is the most a stream sends at once under the rate limit.
func (w Wire) burst() int { return max(chunkSize, int(w.RateLimit/10)) }

// throttled is a writer that waits on a limiter before each write.
type throttled struct {
	ctx context.Context
	w   io.Writer
	lim *rate.Limiter
}

func (t throttled) Write(p []byte) (int, error) {
	for off := 0; off < len(p); {
		n := min(len(p)-off, t.lim.Burst())
		if err := t.lim.WaitN(t.ctx, n); err != nil {
			return off, err
		}
		m, err := t.w.Write(p[off : off+n])
		off += m
		if err != nil {
			return off, err
		}
	}
	return len(p), nil
}

// senderWriter wraps a data stream for sending; close flushes it.
func (w Wire) senderWriter(ctx context.Context, conn io.Writer, lim *rate.Limiter) (io.Writer, func() error, error) {
	if lim != nil {
		conn = throttled{ctx: ctx, w: conn, lim: lim}
	}
	if !w.Compress {
		return conn, func() error { return nil }, nil
	}
	zw, err := zstd.NewWriter(conn, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, nil, err
	}
	return zw, zw.Close, nil
}

// receiverReader wraps a data stream for receiving. The zstd decoder's memory is bounded,
// and frames and declared sizes bound what decompression can produce: no bomb gets far.
func (w Wire) receiverReader(conn io.Reader) (io.Reader, func(), error) {
	if !w.Compress {
		return conn, func() {}, nil
	}
	zr, err := zstd.NewReader(conn, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(64<<20), zstd.WithDecoderMaxWindow(8<<20))
	if err != nil {
		return nil, nil, err
	}
	return zr, zr.Close, nil
}
