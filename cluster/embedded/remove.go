package embedded

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
)

// Errors of membership changes asked by an operator.
var (
	// ErrNoSuchMember means no member of the store cluster has that name.
	ErrNoSuchMember = errors.New("no such member of the store cluster")
	// ErrMemberRunning means the member to remove still answers.
	ErrMemberRunning = errors.New("the member still answers")
	// ErrWouldLoseQuorum means a removal would leave the voting members without a
	// majority that answers.
	ErrWouldLoseQuorum = errors.New("no majority of the voting members answers to decide the removal")
)

// RemoveMember removes the member named name from the store cluster: what an operator
// does for a node gone for good, so that the others stop waiting for it and the leader
// can promote a learner in its place. A member that still answers is removed only with
// force (its node then runs without a store until it is wiped and joins again), and never
// if the voting members left would have no majority that answers.
func (s *Store) RemoveMember(ctx context.Context, name string, force bool) (Member, error) {
	ms, err := s.Members(ctx)
	if err != nil {
		return Member{}, err
	}
	i := slices.IndexFunc(ms, func(m Member) bool { return m.Name == name })
	if i < 0 {
		return Member{}, fmt.Errorf("%w: %q; 'drayage store ls' lists them", ErrNoSuchMember, name)
	}
	m := ms[i]
	if m.Reachable && !force {
		return m, fmt.Errorf("member %q: %w: its node runs; stop it first (a running member cut off from the cluster can't serve), or remove it anyway with --force", name, ErrMemberRunning)
	}
	// The removal is itself decided by the voting members as they are now: a majority of
	// them must answer.
	voters, answer := 0, 0
	for _, o := range ms {
		if o.Role == RoleVoter && o.Started {
			voters++
			if o.Reachable {
				answer++
			}
		}
	}
	if answer <= voters/2 {
		return m, fmt.Errorf("member %q: %w: %d of the %d voting members answer; bring back the nodes that are down first", name, ErrWouldLoseQuorum, answer, voters)
	}
	id, err := strconv.ParseUint(m.ID, 16, 64)
	if err != nil {
		return m, fmt.Errorf("member %q: bad id %q: %w", name, m.ID, err)
	}
	cctx, cancel := context.WithTimeout(ctx, changeTimeout)
	defer cancel()
	if _, err := s.Client().MemberRemove(cctx, id); err != nil {
		return m, fmt.Errorf("remove member %q from the store cluster: %w", name, err)
	}
	s.opts.Logger.Warn("removed a member from the store cluster", "node", s.opts.Name, "member", name, "id", m.ID, "forced", force)
	return m, nil
}

// Snapshot writes a consistent snapshot of the store's data (etcd's own format: restore
// it with etcdutl snapshot restore) to w and returns its size.
func (s *Store) Snapshot(ctx context.Context, w io.Writer) (int64, error) {
	rc, err := s.Client().Snapshot(ctx)
	if err != nil {
		return 0, s.explain(ctx, fmt.Errorf("store snapshot: %w", err))
	}
	defer rc.Close()
	n, err := io.Copy(w, rc)
	if err != nil {
		return n, fmt.Errorf("store snapshot: %w", err)
	}
	return n, nil
}
