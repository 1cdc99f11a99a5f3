package embedded

import (
	"context"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// seatEvery is how often a client node looks for a free seat among the members.
const seatEvery = 2 * time.Second

// takeSeat runs on a client node until ctx ends or it becomes a member: whenever the
// cluster has fewer members than Voters (a member was removed: by an operator, or by the
// leader in place of one down too long), it joins as a learner and returns its server.
func (s *Store) takeSeat(ctx context.Context) *embed.Etcd {
	if err := s.opts.checkCertificate(); err != nil {
		return nil // said at join: this node stays a client
	}
	t := time.NewTicker(seatEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		cli, err := newClient(ctx, s.opts, s.Client().Endpoints())
		if err != nil {
			continue
		}
		srv, _, err := becomeMember(ctx, s.opts, cli)
		cli.Close()
		if err != nil {
			s.opts.Logger.Warn("cannot take the free seat in the store cluster; trying again", "node", s.opts.Name, "err", err)
			continue
		}
		if srv != nil {
			s.opts.Logger.Info("took a free seat in the store cluster: this node's member runs", "node", s.opts.Name, "addr", s.opts.ClientAddr)
			return srv
		}
	}
}
