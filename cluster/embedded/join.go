package embedded

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// ErrAddressNotInCertificate means this node's certificate does not name the address its
// store member would advertise: the other members, which check it, could not reach it.
var ErrAddressNotInCertificate = errors.New("the node's certificate does not name its store address")

// join makes this node part of the running cluster that seeds (client addresses of its
// members) lead to: a member if it can be one (becomeMember), else a client.
func join(ctx context.Context, opts Options, seeds []string) (*Store, error) {
	cli, err := newClient(ctx, opts, seeds)
	if err != nil {
		return nil, fmt.Errorf("embedded store of node %q: join the members at %v: %w", opts.Name, seeds, err)
	}
	defer cli.Close()
	srv, members, err := becomeMember(ctx, opts, cli)
	if err != nil {
		return nil, err
	}
	return connect(ctx, opts, srv, voterURLs(members))
}

func newClient(ctx context.Context, opts Options, endpoints []string) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{Endpoints: endpoints, TLS: opts.clientTLS(), DialTimeout: 5 * time.Second,
		Logger: zap.NewNop(), Context: context.WithoutCancel(ctx)})
}

// becomeMember adds this node to the cluster cli reaches as a learner and starts its
// member, while the cluster has fewer members than Voters; otherwise it returns no
// server (the node is a client) and the members. A node the cluster knows as a member but
// that has no data (it lost its disk) is removed and added as a new member.
func becomeMember(ctx context.Context, opts Options, cli *clientv3.Client) (*embed.Etcd, []*etcdserverpb.Member, error) {
	members, err := memberList(ctx, cli)
	if err != nil {
		return nil, nil, fmt.Errorf("embedded store of node %q: list the members: %w", opts.Name, err)
	}
	if eps := voterURLs(members); len(eps) > 0 {
		cli.SetEndpoints(eps...) // membership changes go to voters: a learner refuses them
	}
	_, peerURL := opts.urls()
	self := slices.IndexFunc(members, opts.isSelf)
	if self >= 0 && members[self].Name != "" {
		opts.Logger.Warn("the store cluster knows this node as a member but its data is gone: rejoining as a new member",
			"node", opts.Name, "member", fmt.Sprintf("%x", members[self].ID), "dir", opts.Dir)
		cctx, cancel := context.WithTimeout(ctx, changeTimeout)
		_, err := cli.MemberRemove(cctx, members[self].ID)
		cancel()
		if err != nil {
			return nil, nil, fmt.Errorf("embedded store of node %q: remove its stale member %x before rejoining: %w", opts.Name, members[self].ID, err)
		}
		if members, err = memberList(ctx, cli); err != nil {
			return nil, nil, err
		}
		self = -1
	}
	if self < 0 {
		if len(members) >= opts.Voters {
			return nil, members, nil
		}
		if err := opts.checkCertificate(); err != nil {
			opts.Logger.Error("this node can't be a store member; it is a client", "node", opts.Name, "err", err)
			return nil, members, nil
		}
		cctx, cancel := context.WithTimeout(ctx, changeTimeout)
		resp, err := cli.MemberAddAsLearner(cctx, []string{peerURL.String()})
		cancel()
		if err != nil {
			return nil, nil, fmt.Errorf("embedded store of node %q: add it as a learner member: %w", opts.Name, err)
		}
		members = resp.Members
		opts.Logger.Info("joining the store cluster as a learner", "node", opts.Name, "member", fmt.Sprintf("%x", resp.Member.ID), "peer", peerURL.String())
	}
	for attempt := 1; ; attempt++ {
		srv, err := startServer(ctx, opts, embed.ClusterStateFlagExisting, initialCluster(members, opts.Name, peerURL.String()))
		if err == nil {
			return srv, members, nil
		}
		if attempt == 10 || !membershipChanged(err) {
			return nil, nil, err
		}
		// Another node was added since the list was read (nodes joining at once): the
		// member checks its list against the cluster's. Nothing was written; read again.
		if err := os.RemoveAll(opts.Dir); err != nil {
			return nil, nil, err
		}
		time.Sleep(200 * time.Millisecond)
		if members, err = memberList(ctx, cli); err != nil {
			return nil, nil, err
		}
	}
}

// membershipChanged reports whether a member failed to start because the cluster's
// membership is not the one it was started with (etcd says so in words only).
func membershipChanged(err error) bool {
	return strings.Contains(err.Error(), "member count is unequal") || strings.Contains(err.Error(), "unmatched member while checking PeerURLs")
}

// changeTimeout bounds a membership change. Raft takes one at a time and drops a
// change proposed while another is pending, and etcd then waits for it for ever: the
// joiner gives up, looks at the membership again and retries.
const changeTimeout = 10 * time.Second

func memberList(ctx context.Context, cli *clientv3.Client) ([]*etcdserverpb.Member, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := cli.MemberList(ctx)
	if err != nil {
		return nil, err
	}
	return resp.Members, nil
}

// initialCluster is the NAME=PEER-URL list a member added to a running cluster starts
// with: every member, itself included. etcd matches the list to the membership by peer
// URL; a member added but not started has no name yet, so it gets a placeholder.
func initialCluster(members []*etcdserverpb.Member, name, peerURL string) string {
	var parts []string
	for _, m := range members {
		n := m.Name
		if slices.Contains(m.PeerURLs, peerURL) {
			n = name
		}
		if n == "" {
			n = fmt.Sprintf("pending-%x", m.ID)
		}
		for _, u := range m.PeerURLs {
			parts = append(parts, n+"="+u)
		}
	}
	return strings.Join(parts, ",")
}

// voterURLs are the client URLs of the started voting members.
func voterURLs(members []*etcdserverpb.Member) []string {
	var out []string
	for _, m := range members {
		if m.Name != "" && !m.IsLearner {
			out = append(out, m.ClientURLs...)
		}
	}
	return out
}

// checkCertificate checks that the node's certificate names the host of its peer
// address, which the other members check when they dial it.
func (o Options) checkCertificate() error {
	if o.Identity == nil {
		return nil
	}
	host, _, err := net.SplitHostPort(o.PeerAddr)
	if err != nil {
		return err
	}
	if err := o.Identity.Certificate().VerifyHostname(host); err != nil {
		return fmt.Errorf("%w: %s is not in it; issue it again with 'drayage tls add-node %s --ip %s=%s --force' (or set DRAYAGE_ADVERTISE to an address it names)",
			ErrAddressNotInCertificate, host, o.Name, o.Name, host)
	}
	return nil
}

// awayWait bounds how long a returning member looks for the others before it starts
// over its data as it is.
const awayWait = 10 * time.Second

// removedWhileAway reports whether the cluster that Seeds leads to no longer lists this
// node's member (by name or peer URL): it was removed while the node was away. When no
// member answers (the node is the first back, or alone), it is not.
func removedWhileAway(ctx context.Context, opts Options) bool {
	deadline := time.Now().Add(awayWait)
	var seeds []string
	for len(seeds) == 0 {
		if seeds = opts.Seeds(); len(seeds) > 0 {
			break
		}
		if (opts.Alone != nil && opts.Alone()) || time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(200 * time.Millisecond)
	}
	cli, err := newClient(ctx, opts, seeds)
	if err != nil {
		return false
	}
	defer cli.Close()
	members, err := memberList(ctx, cli)
	if err != nil {
		return false
	}
	return !slices.ContainsFunc(members, opts.isSelf)
}

// isSelf reports whether m is this node's member: by name, or, for one added but not yet
// started, by peer URL.
func (o Options) isSelf(m *etcdserverpb.Member) bool {
	_, peerURL := o.urls()
	return m.Name == o.Name || slices.Contains(m.PeerURLs, peerURL.String())
}
