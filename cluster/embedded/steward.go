package embedded

import (
	"context"
	"errors"
	"slices"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/membership"
	etcderrors "go.etcd.io/etcd/server/v3/etcdserver/errors"
)

// stewardEvery is how often the leader looks at the membership.
const stewardEvery = time.Second

// steward runs beside this node's member until ctx ends or the member stops. It points the node's client at
// the voting members as this member sees them, so that the client follows promotions
// and a lost member at once (the client's own sync asks a member, which may be the one
// lost). While the member leads, it promotes learners that have caught up so that the voting members grow toward Voters
// by two at a time (1 -> 3 -> 5): never settling on an even count, which tolerates no
// more failures than the odd count below it. A learner that isn't caught up yet is
// tried again on the next round.
func (s *Store) steward(ctx context.Context) {
	t := time.NewTicker(stewardEvery)
	defer t.Stop()
	quorate, leaderless := true, 0
	es := s.server.Load().Server
	for {
		select {
		case <-ctx.Done():
			return
		case <-es.StopNotify(): // removed from the cluster, or failed
			return
		case <-t.C:
		}
		s.followVoters()
		quorate = s.reportQuorum(ctx, quorate, es.Leader() != 0)
		if es.Leader() == 0 {
			leaderless++
		} else {
			leaderless = 0
		}
		// A member removed while it was cut off learns it from its peers' refusals,
		// which a partition may keep from it; with no leader for a while, it asks the
		// members gossip names whether it is still one of them.
		if leaderless > 0 && leaderless%5 == 0 && s.opts.Seeds != nil && len(s.opts.Seeds()) > 0 && removedWhileAway(ctx, s.opts) {
			return
		}
		if es.Leader() != es.MemberID() {
			continue
		}
		var voters, learners int
		var ready []uint64
		for _, m := range es.Cluster().Members() {
			switch {
			case !m.IsLearner:
				voters++
			case m.Name != "": // started
				learners++
				ready = append(ready, uint64(m.ID))
			}
		}
		want := promotions(voters, learners, s.opts.Voters)
		slices.Sort(ready)
		for _, id := range ready[:want] {
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := es.PromoteMember(pctx, id)
			cancel()
			if err != nil {
				if !errors.Is(err, etcderrors.ErrLearnerNotReady) {
					s.opts.Logger.Warn("cannot promote a learner of the store cluster; trying again", "node", s.opts.Name, "member", id, "err", err)
				}
				break
			}
			s.opts.Logger.Info("promoted a learner to a voting member of the store cluster", "node", s.opts.Name, "member", id)
		}
		s.replaceDown(ctx)
	}
}

// replaceDown, on the leader, removes one voting member whose node has been down
// longer than ReplaceAfter, if another node can take its seat (a started learner, which
// is then promoted, or a live node that is no member, which joins as a learner). The
// leader acts, so a quorum holds; removing a member that is down keeps it.
func (s *Store) replaceDown(ctx context.Context) {
	if s.opts.ReplaceAfter <= 0 || s.opts.Roster == nil {
		return
	}
	alive, downSince := s.opts.Roster()
	es := s.server.Load().Server
	members := es.Cluster().Members()
	spare := slices.ContainsFunc(alive, func(n string) bool {
		return !slices.ContainsFunc(members, func(m *membership.Member) bool { return m.Name == n })
	}) || slices.ContainsFunc(members, func(m *membership.Member) bool { return m.IsLearner && m.Name != "" })
	for _, m := range members {
		since, down := downSince[m.Name]
		if m.IsLearner || m.Name == "" || m.ID == es.MemberID() || !down || time.Since(since) < s.opts.ReplaceAfter {
			continue
		}
		if !spare {
			if s.noSpareSaid != m.Name {
				s.opts.Logger.Warn("a voting member of the store cluster is down for long, but no other node can take its seat", "node", s.opts.Name, "member", m.Name, "down_for", time.Since(since).Round(time.Second))
				s.noSpareSaid = m.Name
			}
			return
		}
		rctx, cancel := context.WithTimeout(ctx, changeTimeout)
		_, err := es.RemoveMember(rctx, uint64(m.ID))
		cancel()
		if err != nil {
			s.opts.Logger.Warn("cannot remove a store member that is down for long; trying again", "node", s.opts.Name, "member", m.Name, "err", err)
			return
		}
		s.opts.Logger.Warn("removed a store member down for longer than DRAYAGE_STORE_REPLACE_AFTER; another node takes its seat, and it joins as a new member if it returns",
			"node", s.opts.Name, "member", m.Name, "down_for", time.Since(since).Round(time.Second), "replace_after", s.opts.ReplaceAfter)
		return // one a round
	}
}

// promotions is how many of learners to promote, given voters, so that the voting
// members become the largest odd count up to max that they can reach.
func promotions(voters, learners, max int) int {
	target := voters
	for n := voters + 1; n <= voters+learners && n <= max; n++ {
		if n%2 == 1 {
			target = n
		}
	}
	return target - voters
}

// seenVoters are the client URLs of the started voting members, as member srv sees the
// membership (no network call).
func seenVoters(srv *embed.Etcd) []string {
	var eps []string
	for _, m := range srv.Server.Cluster().Members() {
		if !m.IsLearner && m.Name != "" {
			eps = append(eps, m.ClientURLs...)
		}
	}
	return eps
}

// followVoters sets the client's endpoints to the started voting members' client URLs,
// from this member's view of the membership, if they changed.
func (s *Store) followVoters() {
	eps := seenVoters(s.server.Load())
	slices.Sort(eps)
	cli := s.Client()
	have := slices.Clone(cli.Endpoints())
	slices.Sort(have)
	if len(eps) > 0 && !slices.Equal(eps, have) {
		cli.SetEndpoints(eps...)
	}
}

// reportQuorum logs the loss of the store's quorum (no leader for two rounds in a row) and
// its return; it returns whether the store has a quorum now, as far as the log goes.
func (s *Store) reportQuorum(ctx context.Context, was, leader bool) bool {
	switch {
	case was && !leader:
		s.lostFor++
		if s.lostFor < 2 {
			return true
		}
		err := s.explain(ctx, errNoLeader)
		s.opts.Logger.Error("the cluster store has lost its quorum: volumes can't be created, mounted anew, moved or removed until enough members return; mounted volumes stay mounted",
			"node", s.opts.Name, "err", err)
		return false
	case !was && leader:
		s.opts.Logger.Info("the cluster store has a quorum again", "node", s.opts.Name)
	}
	s.lostFor = 0
	return leader
}

var errNoLeader = errors.New("this node's store member sees no leader")
