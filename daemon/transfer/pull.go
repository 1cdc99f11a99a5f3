package transfer

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/drayage/drayage/cluster/identity"
	"github.com/drayage/drayage/daemon/metrics"
	"github.com/drayage/drayage/daemon/peers"
	"github.com/drayage/drayage/progress"
)

// PullOptions say what to pull from where.
type PullOptions struct {
	Identity *identity.Identity
	// From is the sending node's name and control address.
	From, Control string
	Volume        string
	Epoch         uint64
	// Staging is where the tree is assembled; what is already there is reused.
	Staging string
	// Streams is how many data streams run in parallel (default 8: many small files need
	// several reads in flight to hide disk latency).
	Streams int
	Sink    SinkOptions
	// Wire asks for compression and a bandwidth limit (the sender may lower the limit).
	Wire Wire
	// IdleTimeout is how long a data stream may wait for the next byte (0:
	// DefaultIdleTimeout; longer if a rate limit makes streams wait their turn).
	IdleTimeout time.Duration
	// Progress, if set, is called about twice a second with what has arrived so far, from
	// one goroutine at a time, and once more at the end. The totals count what the sender
	// sends: a pull that resumes, or updates an older copy, sends only what differs.
	Progress func(progress.Counts)
	// Metrics, if set, counts the pull (role receive) and what it receives.
	Metrics *metrics.Metrics
	// Live says the volume may be written while it is sent (a replica's sync): the
	// sender voids an attempt that read a file changed a moment before (ErrChanged).
	Live bool
	// Walk has the sender read the volume whole, trusting no record of it
	// (treerecord.go); Verify has the receiver read its staging tree whole: checks, now
	// and then, that the records still hold.
	Walk, Verify bool

	// wholeFiles sends changed files whole, not by chunks: a retry after ErrCorrupt.
	wholeFiles bool
}

// PullResult describes a finished pull.
type PullResult struct {
	// Transfer is the ID the sender gave the transfer (its log lines carry it), once it
	// has accepted to send; set on failure too.
	Transfer       string
	Entries, Files int
	// Bytes is how much content crossed the wire; Total is the volume's size.
	Bytes, Total int64
	RootHash     [32]byte
	// Stripped is the privileged content taken off a volume that does not allow it.
	Stripped Stripped
}

// Pull receives a volume into the staging dir and makes it durable there; Install then
// puts it in place. On any failure the sender is told to abort, and staging keeps the
// files that arrived verified, for the next attempt to reuse, and the part of a large file
// that arrived when it was cut, which the next attempt offers as a delta's basis (so it is
// sent the rest, and verifies the whole). A file damaged in transit is asked for again (up
// to three attempts in all); nothing unverified is ever taken as a file's content. The
// root hash covers every file, the ones reused from staging too: if the two ends
// disagree on it, the next attempt has every file sent. A volume sent while it is
// written (to a replica) may have files change while they are read: the attempt does
// not count (ErrChanged), and the next one sends what changed.
//
// With o.Metrics set, a Pull counts as one transfer (its retries included), and the
// content bytes and files count as they arrive.
func Pull(ctx context.Context, o PullOptions) (PullResult, error) {
	t := o.Metrics.Started(metrics.RoleReceive)
	var res PullResult
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		res, err = pull(ctx, o)
		if errors.Is(err, ErrRootMismatch) && !o.Sink.TrustNothing {
			// A file reused from staging, or its stored hash, is not what the sender has:
			// send every file again.
			o.Sink.TrustNothing = true
			continue
		}
		if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrChanged) {
			break
		}
		if errors.Is(err, ErrCorrupt) {
			o.wholeFiles = true // a copy compared by chunks may be what was damaged
		}
		if errors.Is(err, ErrChanged) { // files still being written: give them a moment
			select {
			case <-ctx.Done():
				return res, err
			case <-time.After(2 * racyWindow):
			}
		}
	}
	if err != nil {
		t.Failed(failureReason(ctx, err))
	} else {
		t.Completed()
	}
	return res, err
}

func pull(ctx context.Context, o PullOptions) (res PullResult, err error) {
	if o.Streams <= 0 {
		o.Streams = 8
	}
	conn, err := peers.Dial(o.Identity, o.From, o.Control)
	if err != nil {
		return res, err
	}
	defer conn.Close()
	// Staging is read while the sender walks its tree: on a delta, both walks are most
	// of the time.
	reading := readStagingAhead(ctx, o.Staging, !o.Verify)
	defer reading.stop()
	var open openResponse
	if err := invoke(ctx, conn, openTimeout, methodOpen, &openRequest{Volume: o.Volume, Epoch: o.Epoch, Wire: o.Wire, Version: protocolVersion, Live: o.Live, Walk: o.Walk}, &open); err != nil {
		reason := metrics.ReasonRefused
		if status.Code(err) == codes.Unavailable {
			reason = metrics.ReasonPeerDown
		}
		return res, &failure{reason: reason, err: fmt.Errorf("node %q refused to send volume %q: %w", o.From, o.Volume, err)}
	}
	res.Transfer = open.Transfer
	defer func() {
		if err != nil {
			abortCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_ = invoke(abortCtx, conn, wantTimeout, methodFinish, &finishRequest{Transfer: open.Transfer, Abort: true}, &empty{})
		}
	}()
	entries, err := decodeManifest(open.Manifest)
	if err != nil {
		return res, fmt.Errorf("manifest from node %q: %w", o.From, err)
	}
	have, err := reading.wait()
	if err != nil {
		return res, fmt.Errorf("volume %q on node %q: %w; check that the state dir is readable and retry", o.Volume, o.Identity.Name(), err)
	}
	sink, err := newSink(o.Staging, entries, have, o.Sink)
	if err != nil {
		return res, fmt.Errorf("volume %q from node %q: %w", o.Volume, o.From, err)
	}
	defer sink.Close()
	sink.rootAll = open.Version >= 2
	sink.flow = o.Metrics.Flow(metrics.Received)
	wanted := sink.Wanted()
	res.Entries, res.Files = len(entries), len(wanted)
	for _, e := range entries {
		res.Total += e.Size
	}
	var wantBytes int64
	for _, i := range wanted {
		wantBytes += entries[i].Size
	}
	if open.Version >= 3 && !o.Sink.TrustNothing && !o.wholeFiles {
		basis, err := sink.chunkBasis(ctx, sink.present)
		if err != nil {
			return res, fmt.Errorf("volume %q on node %q: %w", o.Volume, o.Identity.Name(), err)
		}
		if len(basis) > 0 {
			if err := invoke(ctx, conn, wantTimeout, methodBasis, &basisRequest{Transfer: open.Transfer, Files: basis}, &empty{}); err != nil {
				return res, fmt.Errorf("node %q: %w", o.From, err)
			}
		}
	}
	sink.present = nil
	if err := invoke(ctx, conn, wantTimeout, methodWant, &wantRequest{Transfer: open.Transfer, Indexes: wanted}, &empty{}); err != nil {
		return res, fmt.Errorf("node %q: %w", o.From, err)
	}
	if err := receiveAll(ctx, o, sink, open, progress.Counts{Total: wantBytes, TotalFiles: len(wanted)}); err != nil {
		return res, fmt.Errorf("volume %q from node %q: %w", o.Volume, o.From, err)
	}
	root, err := sink.Finish(ctx)
	if err != nil {
		return res, fmt.Errorf("volume %q: %w", o.Volume, err)
	}
	if err := invoke(ctx, conn, finishTimeout, methodFinish, &finishRequest{Transfer: open.Transfer, RootHash: root[:]}, &empty{}); err != nil {
		switch status.Code(err) {
		case codes.DataLoss:
			err = &failure{reason: metrics.ReasonCorrupt, err: fmt.Errorf("%w: %s", ErrRootMismatch, status.Convert(err).Message())}
		case codes.Aborted:
			err = &failure{reason: metrics.ReasonChanged, err: fmt.Errorf("%w: %s", ErrChanged, status.Convert(err).Message())}
		}
		return res, err
	}
	res.Bytes, res.RootHash, res.Stripped = sink.Bytes(), root, sink.Stripped()
	return res, nil
}

// stagingRead is staging being read in the background (readStaging).
type stagingRead struct {
	cancel context.CancelFunc
	done   chan struct{} // closed once have and err are set
	have   staged
	err    error
}

// readStagingAhead starts reading staging; wait has what it found, stop gives up on it.
func readStagingAhead(ctx context.Context, dir string, trust bool) *stagingRead {
	ctx, cancel := context.WithCancel(ctx)
	r := &stagingRead{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.have, r.err = readStaging(ctx, dir, trust)
	}()
	return r
}

// wait returns what was read of staging, once it has been.
func (r *stagingRead) wait() (staged, error) {
	<-r.done
	return r.have, r.err
}

// stop ends the reading, if it still runs, and waits for it: a pull that fails before
// it needs staging leaves nothing running.
func (r *stagingRead) stop() {
	r.cancel()
	<-r.done
}

// How long each control call may take. Keepalives find a sender that stopped answering
// sooner; these bound one that answers pings but never the call. Open walks the volume
// (a minute or two for ten million files); Finish waits for the sender's last streams
// and reads the files it did not send to hash them, if it has no hashes stored for them.
const (
	openTimeout   = 15 * time.Minute
	wantTimeout   = 2 * time.Minute
	finishTimeout = time.Hour
)

// invoke calls method of the transfer service within timeout.
func invoke(ctx context.Context, conn *grpc.ClientConn, timeout time.Duration, method string, req, res any) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return conn.Invoke(ctx, "/"+serviceName+"/"+method, req, res)
}

// receiveAll runs the data streams until every wanted file has arrived.
func receiveAll(ctx context.Context, o PullOptions, sink *sink, open openResponse, want progress.Counts) error {
	streams := min(o.Streams, max(want.TotalFiles, 1))
	report := func() {
		p := want
		p.Bytes, p.Files = sink.Bytes(), sink.Files()
		o.Progress(p)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ticking := make(chan struct{})
	if o.Progress != nil {
		go func() {
			defer close(ticking)
			t := time.NewTicker(500 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					report()
				}
			}
		}()
	} else {
		close(ticking)
	}
	errs := make(chan error, streams)
	var wg sync.WaitGroup
	for range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- receiveStream(ctx, o, sink, open)
		}()
	}
	go func() { wg.Wait(); close(errs) }()
	var first error
	for err := range errs {
		if err != nil && first == nil {
			first = err
			cancel() // one failed stream fails the pull; stop the others
		}
	}
	cancel()
	<-ticking // Progress is never called twice at once
	if first == nil && o.Progress != nil {
		report()
	}
	return first
}

func receiveStream(ctx context.Context, o PullOptions, sink *sink, open openResponse) error {
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: o.Identity.ClientConfig(o.From)}
	c, err := d.DialContext(ctx, "tcp", open.Data)
	if err != nil {
		return fmt.Errorf("data stream to %s: %w", open.Data, err)
	}
	defer c.Close()
	defer closeOnDone(ctx, c)()
	conn := idleConn{Conn: c, idle: open.Wire.streamIdle(o.IdleTimeout, o.Streams)}
	if _, err := conn.Write([]byte(open.Transfer)); err != nil {
		return err
	}
	r, done, err := open.Wire.receiverReader(conn)
	if err != nil {
		return err
	}
	defer done()
	if err := sink.Receive(r); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("node %q sent nothing on a data stream for %s (DRAYAGE_STREAM_TIMEOUT): %w", o.From, conn.idle, err)
		}
		return err
	}
	return nil
}

// Install puts a finished staging tree in place of dest in one atomic step: dest is
// either the old tree or the complete new one, never anything between. The old tree is
// then deleted, and the staging tree's stored hashes go with it to dest.
func Install(staging, dest string) error {
	err := unix.Renameat2(unix.AT_FDCWD, staging, unix.AT_FDCWD, dest, unix.RENAME_EXCHANGE)
	switch {
	case errors.Is(err, unix.ENOENT):
		if _, serr := os.Lstat(dest); !errors.Is(serr, os.ErrNotExist) {
			return err
		}
		err = os.Rename(staging, dest) // nothing there yet
	case err == nil:
		err = syncDir(filepath.Dir(dest))
		if err == nil {
			err = os.RemoveAll(staging) // the old tree, now at staging
		}
	}
	if err != nil {
		return fmt.Errorf("install %s: %w", dest, err)
	}
	if err := MoveIndex(staging, dest); err != nil {
		return fmt.Errorf("install %s: %w", dest, err)
	}
	return syncDir(filepath.Dir(dest))
}

// MoveIndex moves the stored hashes of the tree at from to the tree at to (which has
// just moved there), or removes those of to if from has none. A hash that outlives its
// tree is harmless: it holds only for a file with its stamp, and another tree's files
// have other change times.
func MoveIndex(from, to string) error {
	err := os.Rename(IndexPath(from), IndexPath(to))
	if errors.Is(err, os.ErrNotExist) {
		return RemoveIndex(to)
	}
	return err
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
