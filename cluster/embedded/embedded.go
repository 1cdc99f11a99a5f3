// Package embedded runs a single-member etcd server inside the daemon (go.etcd.io/etcd/
// server/v3/embed) and serves cluster.Store from it: the default store, for one host or a
// demo. Other nodes can use it as an ordinary etcd at its client address.
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
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

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
	scheme := "http"
	if opts.Identity != nil {
		scheme = "https"
	} else {
		for _, addr := range []string{opts.ClientAddr, opts.PeerAddr} {
			if !loopback(addr) {
				return nil, fmt.Errorf("embedded store on %s: %w: without a node certificate in the TLS dir (DRAYAGE_TLS_DIR) it listens on loopback only, where only this host reaches it; make the cluster's certificates with 'drayage tls init', or keep DRAYAGE_EMBEDDED_ADDR on 127.0.0.1",
					addr, ErrPlaintext)
			}
		}
	}
	clientURL := url.URL{Scheme: scheme, Host: opts.ClientAddr}
	peerURL := url.URL{Scheme: scheme, Host: opts.PeerAddr}
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
	if opts.Identity != nil {
		ca, cert, key := opts.Identity.Files()
		tlsInfo := transport.TLSInfo{CertFile: cert, KeyFile: key, TrustedCAFile: ca, ClientCertAuth: true}
		cfg.ClientTLSInfo, cfg.PeerTLSInfo = tlsInfo, tlsInfo
		cfg.TlsMinVersion = "TLS1.3"
	}
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
	var clientTLS *tls.Config
	if opts.Identity != nil {
		clientTLS = opts.Identity.ClientConfig(opts.Name)
	}
	client, err := etcdstore.Open(ctx, etcdstore.Options{Endpoints: []string{opts.ClientAddr}, TLS: clientTLS})
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
