// Package embedded runs an etcd server inside the daemon (go.etcd.io/etcd/server/v3/embed)
// and serves cluster.Store from it: the default store, with no other server to run.
//
// Alone, a node starts a cluster of one member (Start without Options.Seeds, or when
// Options.Alone says so). Nodes that find a running member (Options.Seeds, fed from
// gossip) form one raft cluster with it (join.go): a new node is added as a learner, which
// copies the data without a vote, and the leader promotes learners once they have caught
// up, so that the voting members grow 1 -> 3 (Options.Voters) without ever settling on an
// even count (steward.go). Nodes beyond that are clients; a client takes a seat that
// frees (seat.go). Every node's client talks to all voting members and follows
// membership changes, so one member's loss is a leader election, not an outage. The
// leader replaces a voter down longer than Options.ReplaceAfter; a removed member sets
// its stale data aside and goes on as a client (join.go, embedded.go). Members lists
// them, RemoveMember and Snapshot serve the operator (members.go, remove.go), and a lost
// quorum is said as such (quorum.go).
//
// The store's word decides who may write a volume, so only the cluster's nodes may speak
// to it: on a node with a cluster identity, both of the server's ports serve TLS 1.3 with
// the node's certificate and admit only clients and peers whose certificates the cluster
// CA signed (any node of the cluster; the store has no users of its own). A node without
// an identity runs alone, and its store listens in plaintext on loopback only: a
// plaintext address elsewhere is refused at start.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/server/v3/embed"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/cluster/etcdstore"
	"github.com/drayage/drayage/cluster/identity"
)

// Options configures the embedded server.
type Options struct {
	// Dir holds the server's data (under the daemon's state dir).
	Dir string
	// Name is the member name (the node name).
	Name string
	// ClientAddr is host:port the server listens on for clients (default
	// 127.0.0.1:7793). Listen on a reachable address to let other nodes use it.
	ClientAddr string
	// PeerAddr is host:port for the peer port, which a single member only listens on
	// (default: the client address's host and port + 1).
	PeerAddr string
	// StartTimeout bounds the wait for the server to be ready (default 60s).
	StartTimeout time.Duration
	// Identity, if set, is this node's: the server serves mutual TLS with it on both
	// ports, and the node's own client uses it. Without it, both addresses must be on
	// loopback.
	Identity *identity.Identity
	// Seeds, if set, returns the client addresses of running members of the cluster to
	// join (gossip's view). Start asks until it names one, or until Alone says to start
	// a new cluster. Without Seeds the node starts alone.
	Seeds func() []string
	// Alone says whether to start a new cluster while Seeds names no member: true for
	// the first node (it joins no one), or the first by name of nodes that start at once.
	Alone func() bool
	// Voters is how many voting members the cluster grows to: odd, default 3.
	Voters int
	// ReplaceAfter: a voting member down (Roster) longer than this is removed by the
	// leader when another node can take its seat (0: never). A client node takes a free
	// seat by itself.
	ReplaceAfter time.Duration
	// Roster, if set, is gossip's view: the nodes alive now, and since when each node
	// that is down has been.
	Roster func() (alive []string, downSince map[string]time.Time)
	// OnMember, if set, is called with the member's client address once this node runs a
	// member (at start, or when it takes a free seat later), and with "" when the member
	// stops.
	OnMember func(clientAddr string)
	// Logger receives membership changes (nil: discarded).
	Logger *slog.Logger
}

// ErrPlaintext means the store would listen in plaintext beyond this host.
var ErrPlaintext = errors.New("plaintext beyond loopback")

// loopback reports whether the host of addr is a loopback address.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Store is a cluster.Store served by the embedded etcd cluster: a member running in this
// process (server set), or a client of the members on other nodes.
type Store struct {
	*etcdstore.Store
	server atomic.Pointer[embed.Etcd] // nil on a client, until it takes a seat
	opts   Options
	stop   context.CancelFunc
	done   chan struct{}
	// lostFor counts the steward's rounds without a leader, and noSpareSaid names the
	// member whose replacement it said it can't make (the steward's own).
	lostFor     int
	noSpareSaid string
}

var _ cluster.Store = (*Store)(nil)

// Start starts this node's part in the embedded store: it reopens the member whose data
// is in Dir, joins the cluster Seeds names, or starts a new one, and connects.
func Start(ctx context.Context, opts Options) (*Store, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if hasData(opts.Dir) && opts.Seeds != nil && removedWhileAway(ctx, opts) {
		// Its member was removed while this node was away: its data is stale. It is
		// kept aside, not deleted, and the node joins as a new member.
		aside := fmt.Sprintf("%s.removed-%d", opts.Dir, time.Now().Unix())
		if err := os.Rename(opts.Dir, aside); err != nil {
			return nil, fmt.Errorf("embedded store of node %q: set its stale data aside: %w", opts.Name, err)
		}
		opts.Logger.Warn("this node's store member was removed from the cluster while it was away: its stale data is set aside and it joins as a new member",
			"node", opts.Name, "stale_data", aside)
	}
	if hasData(opts.Dir) || opts.Seeds == nil {
		srv, err := startServer(ctx, opts, embed.ClusterStateFlagNew, "")
		if err != nil {
			return nil, err
		}
		return connect(ctx, opts, srv, []string{opts.ClientAddr})
	}
	for {
		if seeds := opts.Seeds(); len(seeds) > 0 {
			s, err := join(ctx, opts, seeds)
			if err == nil || ctx.Err() != nil {
				return s, err
			}
			opts.Logger.Warn("cannot join the store cluster yet; trying again", "node", opts.Name, "members", seeds, "err", err)
			time.Sleep(time.Second)
			continue
		}
		if opts.Alone != nil && opts.Alone() {
			srv, err := startServer(ctx, opts, embed.ClusterStateFlagNew, "")
			if err != nil {
				return nil, err
			}
			return connect(ctx, opts, srv, []string{opts.ClientAddr})
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("embedded store of node %q: no member of the cluster found to join: %w", opts.Name, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (o Options) withDefaults() (Options, error) {
	if o.ClientAddr == "" {
		o.ClientAddr = "127.0.0.1:7793"
	}
	if o.PeerAddr == "" {
		host, port, err := net.SplitHostPort(o.ClientAddr)
		n, perr := strconv.Atoi(port)
		if err != nil || perr != nil {
			return o, fmt.Errorf("embedded store address %q: want HOST:PORT", o.ClientAddr)
		}
		o.PeerAddr = net.JoinHostPort(host, strconv.Itoa(n+1))
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = 60 * time.Second
	}
	if o.Voters <= 0 {
		o.Voters = DefaultVoters
	}
	if o.Voters%2 == 0 {
		return o, fmt.Errorf("embedded store of node %q: %d voting members: %w", o.Name, o.Voters, ErrEvenVoters)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Identity == nil {
		for _, addr := range []string{o.ClientAddr, o.PeerAddr} {
			if !loopback(addr) {
				return o, fmt.Errorf("embedded store on %s: %w: without a node certificate in the TLS dir (DRAYAGE_TLS_DIR) it listens on loopback only, where only this host reaches it; make the cluster's certificates with 'drayage tls init', or keep DRAYAGE_EMBEDDED_ADDR on 127.0.0.1",
					addr, ErrPlaintext)
			}
		}
	}
	return o, nil
}

// DefaultVoters is how many voting members the embedded cluster grows to by default.
const DefaultVoters = 3

// ErrEvenVoters means an even count of voting members was asked for: it tolerates no
// more failures than the odd count below it, and splits evenly in a partition.
var ErrEvenVoters = errors.New("the count of voting members must be odd (1, 3, 5, ...)")

// hasData reports whether dir holds a member's data (its write-ahead log).
func hasData(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "member", "wal"))
	return err == nil
}

// connect opens this node's client to the cluster at endpoints; it follows membership
// changes from then on. With a server, the steward runs beside it.
func connect(ctx context.Context, opts Options, srv *embed.Etcd, endpoints []string) (*Store, error) {
	if srv != nil {
		// The member's own view of the voters: a learner serves no client requests.
		if voters := seenVoters(srv); len(voters) > 0 {
			endpoints = voters
		}
	}
	client, err := etcdstore.Open(ctx, etcdstore.Options{Endpoints: endpoints, TLS: opts.clientTLS(), AutoSync: 10 * time.Second})
	if err != nil {
		if srv != nil {
			srv.Close()
		}
		return nil, err
	}
	bg, stop := context.WithCancel(context.Background())
	s := &Store{Store: client, opts: opts, stop: stop, done: make(chan struct{})}
	if srv != nil {
		s.member(srv)
	}
	go func() {
		defer close(s.done)
		for {
			if srv == nil {
				if srv = s.takeSeat(bg); srv == nil {
					return
				}
				s.member(srv)
			}
			s.steward(bg) // until ctx ends or the member stops
			if bg.Err() != nil {
				return
			}
			s.memberStopped(bg, srv)
			srv = nil
		}
	}()
	return s, nil
}

// memberStopped handles this node's member stopping while the node runs: the node goes
// on as a client. If the cluster removed the member (the leader replaced it while it was
// cut off, or an operator removed it), its data is stale: it is set aside, and the node
// may take a seat again later as a new member.
func (s *Store) memberStopped(ctx context.Context, srv *embed.Etcd) {
	s.server.Store(nil)
	srv.Close()
	if s.opts.OnMember != nil {
		s.opts.OnMember("")
	}
	if !removedWhileAway(ctx, s.opts) {
		s.opts.Logger.Error("this node's store member stopped; the node goes on as a client of the others. Its data is kept; see the log above for why, and restart the node to run the member again",
			"node", s.opts.Name, "dir", s.opts.Dir)
		return
	}
	aside := fmt.Sprintf("%s.removed-%d", s.opts.Dir, time.Now().Unix())
	if err := os.Rename(s.opts.Dir, aside); err != nil {
		s.opts.Logger.Error("this node's store member was removed from the cluster, and its stale data can't be set aside", "node", s.opts.Name, "dir", s.opts.Dir, "err", err)
		return
	}
	s.opts.Logger.Warn("this node's store member was removed from the cluster: it goes on as a client, its stale data set aside; it takes a seat again if one frees",
		"node", s.opts.Name, "stale_data", aside)
}

// member records that this node's member runs, and says so (Options.OnMember).
func (s *Store) member(srv *embed.Etcd) {
	s.server.Store(srv)
	if s.opts.OnMember != nil {
		s.opts.OnMember(s.opts.ClientAddr)
	}
}

// Close disconnects and stops the server.
func (s *Store) Close() error {
	s.stop()
	<-s.done
	err := s.Store.Close()
	if srv := s.server.Load(); srv != nil {
		srv.Close()
	}
	return err
}
