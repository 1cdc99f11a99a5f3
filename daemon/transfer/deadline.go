package transfer

import (
	"context"
	"io"
	"net"
	"time"
)

// DefaultIdleTimeout is how long a data stream may go without a byte read or written
// before it is given up (PullOptions.IdleTimeout, Server.IdleTimeout).
const DefaultIdleTimeout = time.Minute

// idleConn fails a read or a write that makes no progress for idle: a peer that stops
// sending or reading (paused, cut off without a reset, or hostile) releases its stream,
// and the transfer it belongs to, instead of holding them for ever. The deadline moves
// forward before every call, so a slow peer that keeps moving is never cut.
type idleConn struct {
	net.Conn
	idle time.Duration
}

func (c idleConn) Read(p []byte) (int, error) {
	_ = c.SetReadDeadline(time.Now().Add(c.idle))
	return c.Conn.Read(p)
}

func (c idleConn) Write(p []byte) (int, error) {
	_ = c.SetWriteDeadline(time.Now().Add(c.idle))
	return c.Conn.Write(p)
}

// streamIdle is how long a stream may be quiet: base, or longer if the transfer's rate
// limit makes each of its streams wait longer than that for its turn to send a chunk.
func (w Wire) streamIdle(base time.Duration, streams int) time.Duration {
	if base <= 0 {
		base = DefaultIdleTimeout
	}
	if w.RateLimit <= 0 {
		return base
	}
	wait := time.Duration(float64(streams*w.burst()) / float64(w.RateLimit) * float64(time.Second))
	return max(base, 2*wait)
}

// closeOnDone closes c once ctx ends, to unblock whatever reads or writes it. The stop
// function it returns stops that, or waits until c is closed if ctx has ended already:
// nothing it started outlives stop.
func closeOnDone(ctx context.Context, c io.Closer) (stop func()) {
	closed := make(chan struct{})
	stopAfter := context.AfterFunc(ctx, func() {
		defer close(closed)
		_ = c.Close()
	})
	return func() {
		if !stopAfter() {
			<-closed
		}
	}
}
