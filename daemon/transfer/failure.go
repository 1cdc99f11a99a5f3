package transfer

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/drayage/drayage/daemon/metrics"
)

// failure is an error that knows why a transfer failed, for metrics. Its text is the
// wrapped error's.
type failure struct {
	reason string
	err    error
}

func (f *failure) Error() string { return f.err.Error() }
func (f *failure) Unwrap() error { return f.err }

// failureReason tells why a pull failed, as one of the metrics.Reason values.
func failureReason(ctx context.Context, err error) string {
	var f *failure
	switch {
	case ctx.Err() != nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return metrics.ReasonCanceled
	case errors.Is(err, ErrCorrupt):
		return metrics.ReasonCorrupt
	case errors.Is(err, ErrHostile):
		return metrics.ReasonHostile
	case errors.As(err, &f):
		return f.reason
	case brokenConnection(err):
		return metrics.ReasonPeerDown
	}
	return metrics.ReasonOther
}

// brokenConnection reports whether err means the other node could not be reached or the
// connection to it broke.
func brokenConnection(err error) bool {
	var oe *net.OpError // not net.Error: every syscall.Errno is one, ENOSPC too
	return errors.As(err, &oe) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNREFUSED) || status.Code(err) == codes.Unavailable
}

// refusalReason tells why the sender refused to send: the receiver's claim is not the
// volume's current one (ErrStaleClaim), or something else (mounted here, not held here).
func refusalReason(err error) string {
	if errors.Is(err, ErrStaleClaim) {
		return metrics.ReasonClaimLost
	}
	return metrics.ReasonRefused
}
