package embedded

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
)

// urls are a member's client and peer URLs.
func (o Options) urls() (client, peer url.URL) {
	scheme := "http"
	if o.Identity != nil {
		scheme = "https"
	}
	return url.URL{Scheme: scheme, Host: o.ClientAddr}, url.URL{Scheme: scheme, Host: o.PeerAddr}
}

// startServer starts this node's etcd member over opts.Dir: a new cluster of one (state
// new), or a member already added to a running cluster (state existing, with the
// cluster's members as initial, NAME=PEER-URL,...). A member with data in Dir reopens it
// and ignores both.
func startServer(ctx context.Context, opts Options, state, initial string) (*embed.Etcd, error) {
	clientURL, peerURL := opts.urls()
	cfg := embed.NewConfig()
	cfg.Name = opts.Name
	cfg.Dir = filepath.Clean(opts.Dir)
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.ClusterState = state
	cfg.InitialCluster = initial
	if initial == "" {
		cfg.InitialCluster = cfg.InitialClusterFromName(opts.Name)
	}
	// Learners wait for a third node before they are promoted together (steward.go).
	cfg.MaxLearners = opts.Voters
	// Only etcd's last words (fatallog.go).
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(lastWordsLogger(opts.Logger))
	cfg.ListenMetricsUrls = nil
	if opts.Identity != nil {
		// Both ports admit only certificates of the cluster CA. A member dialling another
		// checks the address it dialled in the other's certificate (etcd's rule), so a
		// node's certificate must name its advertised address (drayage tls init --ip);
		// a connecting member's address is not checked: its CA-signed certificate is its
		// proof.
		ca, cert, key := opts.Identity.Files()
		tlsInfo := transport.TLSInfo{CertFile: cert, KeyFile: key, TrustedCAFile: ca, ClientCertAuth: true, SkipClientSANVerify: true}
		cfg.ClientTLSInfo, cfg.PeerTLSInfo = tlsInfo, tlsInfo
		cfg.TlsMinVersion = "TLS1.3"
	}
	// Quick elections on a LAN: a leader's loss costs about a second.
	cfg.TickMs = 100
	cfg.ElectionMs = 1000
	cfg.PreVote = true

	srv, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("start embedded store in %s on %s: %w", opts.Dir, opts.ClientAddr, err)
	}
	select {
	case <-srv.Server.ReadyNotify():
		return srv, nil
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
}
