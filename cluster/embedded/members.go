package embedded

import (
	"context"
	"crypto/tls"
	"fmt"
	"sort"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Roles of a node in the embedded store.
const (
	RoleVoter   = "voter"   // a member with a vote
	RoleLearner = "learner" // a member catching up, without a vote yet
	RoleClient  = "client"  // no member here: the node uses the others'
)

// Member is one member of the embedded store cluster.
type Member struct {
	Name string `json:"name"`
	ID   string `json:"id"`
	// Role is RoleVoter or RoleLearner.
	Role   string `json:"role"`
	Leader bool   `json:"leader,omitempty"`
	// Started is false for a member added but not yet running.
	Started    bool     `json:"started"`
	PeerURLs   []string `json:"peer_urls"`
	ClientURLs []string `json:"client_urls"`
	// Reachable: its client port answered this node just now.
	Reachable bool `json:"reachable"`
}

// Members lists the store cluster's members, sorted by name, each asked for its status.
func (s *Store) Members(ctx context.Context) ([]Member, error) {
	cli := s.Client()
	members, err := memberList(ctx, cli)
	if err != nil {
		return nil, fmt.Errorf("embedded store: list its members: %w", err)
	}
	var leader uint64
	out := make([]Member, 0, len(members))
	for _, m := range members {
		mm := Member{Name: m.Name, ID: fmt.Sprintf("%x", m.ID), Role: RoleVoter, Started: m.Name != "", PeerURLs: m.PeerURLs, ClientURLs: m.ClientURLs}
		if m.IsLearner {
			mm.Role = RoleLearner
		}
		for _, u := range m.ClientURLs {
			if l, err := s.status(ctx, u); err == nil {
				mm.Reachable, leader = true, l
				break
			}
		}
		out = append(out, mm)
	}
	for i, m := range members {
		out[i].Leader = m.ID == leader
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// status asks the member at client URL u which member leads, on a client of its own:
// the node's client changes its endpoints as the membership changes, and etcd's client
// does not let a status call dial beside that.
func (s *Store) status(ctx context.Context, u string) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{u}, TLS: s.opts.clientTLS(), DialTimeout: 2 * time.Second,
		Logger: zap.NewNop(), Context: ctx})
	if err != nil {
		return 0, err
	}
	defer cli.Close()
	st, err := cli.Status(ctx, u)
	if err != nil {
		return 0, err
	}
	return st.Leader, nil
}

// Role is this node's part in the store cluster.
func (s *Store) Role() string {
	srv := s.server.Load()
	if srv == nil {
		return RoleClient
	}
	// Asked of the membership, not of the server: etcd panics asking a removed member
	// whether it is a learner.
	m := srv.Server.Cluster().Member(srv.Server.MemberID())
	switch {
	case m == nil:
		return RoleClient
	case m.IsLearner:
		return RoleLearner
	default:
		return RoleVoter
	}
}

// ClientAddr is the client address of this node's member, or "" on a client.
func (s *Store) ClientAddr() string {
	if s.server.Load() == nil {
		return ""
	}
	return s.opts.ClientAddr
}

func (o Options) clientTLS() *tls.Config {
	if o.Identity == nil {
		return nil
	}
	return o.Identity.MemberClientConfig()
}
