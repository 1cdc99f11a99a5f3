package transfer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/drayage/drayage/cluster/identity"
	"github.com/drayage/drayage/daemon/metrics"
	"github.com/drayage/drayage/daemon/peers"
)

// Authorizer decides whether node may receive volume at epoch, and says where its data
// is. The daemon's checks the migration claim in the cluster store and that the volume is
// not mounted here (volume.Manager.SendDir). Its error goes to the receiver as it is
// written; one that wraps ErrStaleClaim counts as a claim that is not the volume's
// current one.
type Authorizer func(ctx context.Context, volume, node string, epoch uint64) (dir string, err error)

// ErrStaleClaim marks an Authorizer's refusal of a receiver whose claim on the volume is
// not the volume's current one: its epoch is stale, or the claim was lost.
var ErrStaleClaim = errors.New("the receiver's claim on the volume is not the current one")

// Server is the sending side: it serves Open/Want/Finish on the control port and file
// contents on the data port. Close stops it.
type Server struct {
	id        *identity.Identity
	authorize Authorizer
	data      string // advertised data address
	log       *slog.Logger
	// Cap is the daemon's own limit on every transfer it sends (DRAYAGE_RATE_LIMIT).
	Cap Wire
	// Metrics, if set, counts the transfers served (role send) and what they send. Set
	// it before serving.
	Metrics *metrics.Metrics
	// StaleAfter is how long a transfer is kept with no data stream running and no call
	// from its receiver (a receiver that died or was cut off never calls Finish); 0 means
	// 10 minutes. Set it before serving.
	StaleAfter time.Duration
	// IdleTimeout is how long a data stream may wait for its receiver to read (0:
	// DefaultIdleTimeout). Set it before serving.
	IdleTimeout time.Duration
	// Changes, if set, says what changed in the volumes since a position of its log: a
	// replica's sync of a volume whose tree was read before reads only what changed
	// since (treerecord.go). Set it before serving.
	Changes ChangeLog
	// MaxTransfers bounds the transfers sent at once (0: DefaultMaxTransfers); more are
	// refused until one ends. MaxConns bounds the data connections served at once, their
	// handshakes included (0: DefaultMaxConns); more are closed at once. Set them before
	// serving.
	MaxTransfers, MaxConns int

	// ctx ends at Close: it ends the data streams and the work of every transfer.
	ctx    context.Context
	cancel context.CancelFunc
	// work counts what runs on the Server's behalf beyond a call: ServeData's loops, the
	// data streams, and the ending of a transfer taken from transfers (take). Close waits
	// for it; Add only under mu, while not closed.
	work sync.WaitGroup

	mu        sync.Mutex
	closed    bool
	transfers map[string]*outgoing
	listeners map[net.Listener]bool // served by ServeData
	conns     int                   // data connections being served
}

// Defaults of the limits on what a node sends at once.
const (
	DefaultMaxTransfers = 8
	DefaultMaxConns     = 128
	// maxStreams bounds the data streams of one transfer (a pull opens 8).
	maxStreams = 32
)

// errBusy means a node is at its limit of transfers or connections; retry later.
var errBusy = errors.New("busy")

type outgoing struct {
	receiver string
	volume   string
	epoch    uint64 // the epoch the receiver's claim is at: each data stream checks it again
	source   *source
	streams  sync.WaitGroup
	started  time.Time
	wire     Wire
	version  int // the protocol version both ends speak
	limit    *rate.Limiter
	metric   metrics.Transfer
	// open counts the data streams running, and expiry drops the transfer once none has
	// run and the receiver has not called for StaleAfter; both guarded by Server.mu.
	open   int
	expiry *time.Timer
}

func (s *Server) maxTransfers() int {
	if s.MaxTransfers <= 0 {
		return DefaultMaxTransfers
	}
	return s.MaxTransfers
}

func (s *Server) staleAfter() time.Duration {
	if s.StaleAfter <= 0 {
		return 10 * time.Minute
	}
	return s.StaleAfter
}

// NewServer makes the sending side. data is the advertised data address. Close it once
// done.
func NewServer(id *identity.Identity, authorize Authorizer, data string, log *slog.Logger) *Server {
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{id: id, authorize: authorize, data: data, log: log, ctx: ctx, cancel: cancel,
		transfers: map[string]*outgoing{}, listeners: map[net.Listener]bool{}}
}

// errClosed answers a call that reaches a Server after Close.
var errClosed = status.Error(codes.Unavailable, "the node stops sending volumes (it is shutting down); retry on another node or later")

// Close stops the sending side and returns once everything it started has ended: it
// closes the listeners ServeData serves (ServeData returns), ends every data stream and
// every transfer (their receivers' pulls fail, and keep what arrived verified for a
// retry), and waits for their goroutines. Calls to the control service after Close fail
// with codes.Unavailable; the service itself stops with the gRPC server it is registered
// on. Close may be called more than once.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	transfers, listeners := s.transfers, s.listeners
	s.transfers, s.listeners = map[string]*outgoing{}, nil
	for _, t := range transfers {
		t.expiry.Stop()
	}
	s.mu.Unlock()
	s.cancel() // every stream's connection closes, every source's work stops
	var err error
	for l := range listeners {
		if cerr := l.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) && err == nil {
			err = cerr
		}
	}
	s.work.Wait()
	for id, t := range transfers {
		_ = t.source.Close()
		t.metric.Failed(metrics.ReasonCanceled)
		s.log.Info("stopped sending a volume: this node stops", "volume", t.volume, "peer", t.receiver, "transfer", id)
	}
	return err
}

// take removes transfer id, t, from the transfers, for the caller to end it: it reports
// false if another did or Close did. The caller must call s.work.Done once t is ended,
// so that Close waits for it. s.mu is held.
func (s *Server) take(id string, t *outgoing) bool {
	if s.closed || s.transfers[id] != t {
		return false
	}
	delete(s.transfers, id)
	t.expiry.Stop()
	s.work.Add(1)
	return true
}

// ServiceDesc is the control service, for registering on the control server
// (peers.Server.Register).
func (s *Server) ServiceDesc() *grpc.ServiceDesc {
	return peers.Service(serviceName, peers.Unary(methodOpen, s.open), peers.Unary(methodWant, s.want), peers.Unary(methodFinish, s.finish),
		peers.Unary(methodBasis, s.setBasis))
}

// caller is the node name in the certificate of the peer of a gRPC call.
func caller(ctx context.Context) (string, error) { return peers.Caller(ctx) }

func (s *Server) open(ctx context.Context, r *openRequest) (*openResponse, error) {
	node, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	closed, busy := s.closed, len(s.transfers) >= s.maxTransfers()
	s.mu.Unlock()
	if closed {
		return nil, errClosed
	}
	if busy {
		s.log.Warn("refused to send a volume: at the limit of transfers sent at once", "volume", r.Volume, "peer", node, "limit", s.maxTransfers())
		return nil, status.Errorf(codes.ResourceExhausted, "node %q is sending %d volumes already, its limit (DRAYAGE_MAX_TRANSFERS): %v; retry when one is done",
			s.id.Name(), s.maxTransfers(), errBusy)
	}
	metric := s.Metrics.Started(metrics.RoleSend)
	dir, err := s.authorize(ctx, r.Volume, node, r.Epoch)
	if err != nil {
		metric.Failed(refusalReason(err))
		s.log.Warn("refused to send a volume", "volume", r.Volume, "peer", node, "epoch", r.Epoch, "err", err)
		return nil, err
	}
	how := reading{volume: r.Volume, metrics: s.Metrics, walk: r.Walk}
	if r.Live {
		how.changes = s.Changes
	}
	src, err := newSource(s.ctx, dir, how)
	if err != nil {
		metric.Failed(metrics.ReasonOther)
		return nil, fmt.Errorf("volume %q on node %q: %w", r.Volume, s.id.Name(), err)
	}
	src.flow = s.Metrics.Flow(metrics.Sent)
	src.live = r.Live
	if m := src.MountPoints(); len(m) > 0 {
		s.log.Warn("left mount points inside the volume out of the transfer: a volume moves its own files only; unmount them, or mount them in the container instead",
			"volume", r.Volume, "peer", node, "mount_points", strings.Join(m, ","))
	}
	id := newTransferID()
	wire := r.Wire.merge(s.Cap)
	version := negotiate(r.Version)
	t := &outgoing{receiver: node, volume: r.Volume, epoch: r.Epoch, source: src, started: time.Now(), wire: wire, version: version, limit: wire.limiter(), metric: metric}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = src.Close()
		metric.Failed(metrics.ReasonCanceled)
		return nil, errClosed
	}
	s.transfers[id] = t
	t.expiry = time.AfterFunc(s.staleAfter(), func() { s.expire(id, t) })
	s.mu.Unlock()
	s.log.Info("sending volume", "volume", r.Volume, "peer", node, "transfer", id, "entries", len(src.Manifest()),
		"read", src.read, "read_entries", src.tree.read, "walked_for", src.walkedFor,
		"compress", wire.Compress, "rate_limit", wire.RateLimit)
	return &openResponse{Transfer: id, Manifest: encodeManifest(src.Manifest()), Data: s.data, Wire: wire, Version: version}, nil
}

// lookup finds a transfer, checking it belongs to the calling node.
func (s *Server) lookup(id, node string) (*outgoing, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errClosed
	}
	t, ok := s.transfers[id]
	if !ok || t.receiver != node {
		return nil, fmt.Errorf("no transfer %s for node %q", id, node)
	}
	return t, nil
}

func (s *Server) want(ctx context.Context, r *wantRequest) (*empty, error) {
	return s.update(ctx, r.Transfer, func(src *source) error { return src.Want(r.Indexes) })
}

func (s *Server) setBasis(ctx context.Context, r *basisRequest) (*empty, error) {
	return s.update(ctx, r.Transfer, func(src *source) error { return src.setBasis(r.Files) })
}

// update applies what the calling receiver says of transfer id (Want, Basis) to its
// source, and notes the receiver is still there.
func (s *Server) update(ctx context.Context, id string, apply func(*source) error) (*empty, error) {
	node, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	t, err := s.lookup(id, node)
	if err != nil {
		return nil, err
	}
	s.touch(t)
	if err := apply(t.source); err != nil {
		return nil, fmt.Errorf("volume %q, transfer %s from node %q to node %q: %w", t.volume, id, s.id.Name(), node, err)
	}
	return &empty{}, nil
}

func (s *Server) finish(ctx context.Context, r *finishRequest) (*empty, error) {
	node, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	t, err := s.lookup(r.Transfer, node)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	taken := s.take(r.Transfer, t)
	s.mu.Unlock()
	if !taken { // expired or closed meanwhile
		return nil, fmt.Errorf("no transfer %s for node %q", r.Transfer, node)
	}
	defer s.work.Done()
	t.streams.Wait()
	defer t.source.Close()
	if r.Abort {
		t.metric.Failed(metrics.ReasonAborted)
		s.log.Info("transfer aborted by the receiver", "volume", t.volume, "peer", node, "transfer", r.Transfer)
		return &empty{}, nil
	}
	if changed := t.source.Changed(); len(changed) > 0 {
		t.metric.Failed(metrics.ReasonChanged)
		s.log.Info("files changed while they were sent; the receiver tries again", "volume", t.volume, "peer", node, "transfer", r.Transfer,
			"files", len(changed), "e.g.", changed[0])
		return nil, status.Errorf(codes.Aborted, "volume %q on node %q: %d files changed while they were sent (e.g. %s): %v",
			t.volume, s.id.Name(), len(changed), changed[0], ErrChanged)
	}
	root, err := t.source.rootHash(t.version >= 2)
	if err != nil {
		t.metric.Failed(metrics.ReasonOther)
		return nil, fmt.Errorf("volume %q on node %q: %w", t.volume, s.id.Name(), err)
	}
	if string(root[:]) != string(r.RootHash) {
		t.metric.Failed(metrics.ReasonCorrupt)
		return nil, status.Errorf(codes.DataLoss, "volume %q: root hash mismatch between node %q and node %q; the transfer is not valid", t.volume, s.id.Name(), node)
	}
	t.metric.Completed()
	s.log.Info("sent volume", "volume", t.volume, "peer", node, "transfer", r.Transfer,
		"bytes", t.source.Bytes(), "took", time.Since(t.started).Round(time.Millisecond))
	return &empty{}, nil
}

// touch restarts a transfer's expiry: its receiver is still there.
func (s *Server) touch(t *outgoing) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.open == 0 {
		t.expiry.Reset(s.staleAfter())
	}
}

// expire drops a transfer whose receiver went away without Finish, unless a data stream
// runs or it ended meanwhile.
func (s *Server) expire(id string, t *outgoing) {
	s.mu.Lock()
	taken := t.open == 0 && s.take(id, t)
	s.mu.Unlock()
	if !taken {
		return
	}
	defer s.work.Done()
	t.streams.Wait()
	_ = t.source.Close()
	t.metric.Failed(metrics.ReasonPeerDown)
	s.log.Warn("dropped a transfer: its receiver neither streamed nor finished it", "volume", t.volume, "peer", t.receiver,
		"transfer", id, "idle", s.staleAfter())
}
