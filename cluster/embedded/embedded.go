// Package embedded runs a single-member etcd server inside the daemon (go.etcd.io/etcd/
// server/v3/embed) and serves cluster.Store from it: the default store, for one host or a
// demo. Other nodes can use it as an ordinary etcd at its client address.
package embedded

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/cluster/etcdstore"
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
}

// Store is a cluster.Store served by an etcd server running in this process.
type Store struct {
	*etcdstore.Store
	server *embed.Etcd
}

var _ cluster.Store = (*Store)(nil)

// Start starts the server over Dir (creating it, or reopening its data) and connects.
func Start(ctx context.Context, opts Options) (*Store, error) {
	if opts.ClientAddr == "" {
		opts.ClientAddr = "127.0.0.1:7793"
	}
	if opts.PeerAddr == "" {
		host, port, err := net.SplitHostPort(opts.ClientAddr)
		n, perr := strconv.Atoi(port)
		if err != nil || perr != nil {
			return nil, fmt.Errorf("embedded store address %q: want HOST:PORT", opts.ClientAddr)
		}
		opts.PeerAddr = net.JoinHostPort(host, strconv.Itoa(n+1))
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 60 * time.Second
	}
	clientURL := url.URL{Scheme: "http", Host: opts.ClientAddr}
	peerURL := url.URL{Scheme: "http", Host: opts.PeerAddr}
	cfg := embed.NewConfig()
	cfg.Name = opts.Name
	cfg.Dir = filepath.Clean(opts.Dir)
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(opts.Name)
	// etcd logs spurious errors on every clean shutdown; what matters reaches us as
	// errors from Start or from the client.
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.ListenMetricsUrls = nil
	// Small, quick elections: there is one member.
	cfg.TickMs = 50
	cfg.ElectionMs = 500

	srv, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("start embedded store in %s on %s: %w", opts.Dir, opts.ClientAddr, err)
	}
	select {
	case <-srv.Server.ReadyNotify():
	case err := <-srv.Err():
		srv.Close()
		return nil, fmt.Errorf("embedded store in %s: %w", opts.Dir, err)
	case <-time.After(opts.StartTimeout):
		srv.Close()
		return nil, fmt.Errorf("embedded store in %s not ready after %s", opts.Dir, opts.StartTimeout)
	case <-ctx.Done():
		srv.Close()
		return nil, ctx.Err()
	}
	client, err := etcdstore.Open(ctx, etcdstore.Options{Endpoints: []string{opts.ClientAddr}})
	if err != nil {
		srv.Close()
		return nil, err
	}
	return &Store{Store: client, server: srv}, nil
}

// Close disconnects and stops the server.
func (s *Store) Close() error {
	err := s.Store.Close()
	s.server.Close()
	return err
}
