package embedded_test

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/cluster/embedded"
	"github.com/drayage/drayage/cluster/identity"
)

// clusterNode is the options of node id's part in a cluster whose first member is at
// seed ("" for the first node itself).
func clusterNode(t testing.TB, id *identity.Identity, seed string) embedded.Options {
	t.Helper()
	opts := options(t, id)
	opts.Seeds, opts.Alone = func() []string {
		if seed == "" {
			return nil
		}
		return []string{seed}
	}, func() bool { return seed == "" }
	return opts
}

// voters waits until s sees want voting members, one of them the leader, and returns the
// members.
func voters(t testing.TB, s *embedded.Store, want int) []embedded.Member {
	t.Helper()
	var ms []embedded.Member
	require.Eventually(t, func() bool {
		var err error
		ms, err = s.Members(context.Background())
		if err != nil {
			return false
		}
		n, leaders := 0, 0
		for _, m := range ms {
			if m.Role == embedded.RoleVoter && m.Started {
				n++
			}
			if m.Leader {
				leaders++
			}
		}
		return n == want && leaders == 1
	}, 30*time.Second, 200*time.Millisecond, "want %d voters and one leader; have %+v", want, ms)
	return ms
}

func TestNodesFormAClusterOfThreeVotersAndFurtherNodesAreClients(t *testing.T) {
	ctx := context.Background()
	ids, _ := identities(t, "test", "node-a", "node-b", "node-c", "node-d")
	a := start(t, clusterNode(t, ids["node-a"], ""))
	defer a.Close()
	assert.Equal(t, embedded.RoleVoter, a.Role())

	b := start(t, clusterNode(t, ids["node-b"], a.ClientAddr()))
	defer b.Close()
	assert.Equal(t, embedded.RoleLearner, b.Role(), "the second node waits as a learner: two voters would tolerate no failure")
	time.Sleep(3 * time.Second) // the steward runs every second: it must not promote b alone
	ms := voters(t, a, 1)
	require.Len(t, ms, 2)

	c := start(t, clusterNode(t, ids["node-c"], a.ClientAddr()))
	defer c.Close()
	ms = voters(t, a, 3)
	require.Len(t, ms, 3)
	for _, m := range ms {
		assert.True(t, m.Reachable, "member %s", m.Name)
		assert.Contains(t, m.ClientURLs[0], "https://", "member %s speaks TLS", m.Name)
	}
	assert.Equal(t, embedded.RoleVoter, b.Role())
	assert.Equal(t, embedded.RoleVoter, c.Role())

	d := start(t, clusterNode(t, ids["node-d"], b.ClientAddr()))
	defer d.Close()
	assert.Equal(t, embedded.RoleClient, d.Role(), "a fourth node is a client")
	assert.Empty(t, d.ClientAddr())

	// Every node reads what any node wrote.
	rev, err := d.Txn(ctx, nil, []cluster.Op{cluster.Put("drayage/volumes/v1", []byte("from d"))})
	require.NoError(t, err)
	for name, s := range map[string]*embedded.Store{"a": a, "b": b, "c": c} {
		kv, err := s.Get(ctx, "drayage/volumes/v1")
		require.NoError(t, err, name)
		assert.Equal(t, rev, kv.Rev, name)
	}
}

func TestLosingTheLeaderOfThreeChangesNothingForTheOthers(t *testing.T) {
	ctx := context.Background()
	ids, _ := identities(t, "test", "node-a", "node-b", "node-c")
	a := start(t, clusterNode(t, ids["node-a"], ""))
	var b, c *embedded.Store
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); b = start(t, clusterNode(t, ids["node-b"], a.ClientAddr())) }()
	go func() { defer wg.Done(); c = start(t, clusterNode(t, ids["node-c"], a.ClientAddr())) }()
	wg.Wait()
	defer b.Close()
	defer c.Close()
	ms := voters(t, b, 3)

	var leader *embedded.Store
	var survivors []*embedded.Store
	for _, m := range ms {
		s := map[string]*embedded.Store{"node-a": a, "node-b": b, "node-c": c}[m.Name]
		if m.Leader {
			leader = s
		} else {
			survivors = append(survivors, s)
		}
	}
	if leader != a {
		defer a.Close()
	}
	require.NoError(t, leader.Close())
	lost := time.Now()
	for i, s := range survivors {
		key := fmt.Sprintf("drayage/volumes/after-%d", i)
		wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		_, err := s.Txn(wctx, nil, []cluster.Op{cluster.Put(key, []byte("x"))})
		cancel()
		require.NoError(t, err, "a write after the leader's loss, through a survivor")
		if i == 0 {
			t.Logf("first write after the leader's loss: %s later", time.Since(lost).Round(time.Millisecond))
		}
		kv, err := survivors[1-i].Get(ctx, key)
		require.NoError(t, err)
		assert.Equal(t, "x", string(kv.Value))
	}
}

// threeMembers starts a cluster of node-a, node-b and node-c and waits for its three
// voters; it returns the stores and their options by name.
func threeMembers(t testing.TB, more ...func(*embedded.Options)) (map[string]*embedded.Store, map[string]embedded.Options) {
	t.Helper()
	ids, _ := identities(t, "test", "node-a", "node-b", "node-c", "node-d")
	node := func(n, seed string) embedded.Options {
		o := clusterNode(t, ids[n], seed)
		for _, f := range more {
			f(&o)
		}
		return o
	}
	opts := map[string]embedded.Options{"node-a": node("node-a", "")}
	stores := map[string]*embedded.Store{"node-a": start(t, opts["node-a"])}
	for _, n := range []string{"node-b", "node-c", "node-d"} {
		opts[n] = node(n, stores["node-a"].ClientAddr())
	}
	for _, n := range []string{"node-b", "node-c"} {
		stores[n] = start(t, opts[n])
	}
	voters(t, stores["node-a"], 3)
	return stores, opts
}

func TestLosingTwoOfThreeVotersIsReportedAsLostQuorumUntilOneReturns(t *testing.T) {
	ctx := context.Background()
	stores, opts := threeMembers(t)
	defer stores["node-a"].Close()
	require.NoError(t, stores["node-b"].Close())
	require.NoError(t, stores["node-c"].Close())

	a := stores["node-a"]
	require.Eventually(t, func() bool { return !a.Quorum(ctx).OK }, 15*time.Second, 100*time.Millisecond, "node-a sees no leader")
	wctx, cancel := context.WithTimeout(ctx, 8*time.Second)
	_, err := a.Txn(wctx, nil, []cluster.Op{cluster.Put("drayage/volumes/v", []byte("x"))})
	cancel()
	require.ErrorIs(t, err, cluster.ErrNoQuorum)
	assert.Contains(t, err.Error(), "no leader among its 3 voting members (node-a, node-b, node-c)")
	assert.Contains(t, err.Error(), "a majority (2) must run")

	b := start(t, opts["node-b"]) // back over its data: the same member
	defer b.Close()
	require.Eventually(t, func() bool {
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := a.Txn(wctx, nil, []cluster.Op{cluster.Put("drayage/volumes/v", []byte("x"))})
		return err == nil
	}, 20*time.Second, 200*time.Millisecond, "writes go through again with two of three")
	q := b.Quorum(ctx)
	assert.True(t, q.OK)
	assert.Len(t, q.Voters, 3)
}

func TestAMemberGoneForGoodIsRemovedAndTheRestKeepsAQuorum(t *testing.T) {
	ctx := context.Background()
	stores, _ := threeMembers(t)
	defer stores["node-a"].Close()
	defer stores["node-b"].Close()
	a := stores["node-a"]

	_, err := a.RemoveMember(ctx, "node-x", false)
	require.ErrorIs(t, err, embedded.ErrNoSuchMember)
	_, err = a.RemoveMember(ctx, "node-b", false)
	require.ErrorIs(t, err, embedded.ErrMemberRunning, "a running member is not removed without force")

	require.NoError(t, stores["node-c"].Close()) // node-c is gone for good
	_, err = a.RemoveMember(ctx, "node-c", false)
	require.NoError(t, err)
	ms := voters(t, a, 2)
	require.Len(t, ms, 2)

	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err = a.Txn(wctx, nil, []cluster.Op{cluster.Put("drayage/volumes/v", []byte("x"))})
	require.NoError(t, err, "two voters of two: a quorum")

	var snap bytes.Buffer
	n, err := a.Snapshot(ctx, &snap)
	require.NoError(t, err)
	assert.Positive(t, n)
	assert.Equal(t, int64(snap.Len()), n)
}

func TestARemovedMemberThatReturnsSetsItsStaleDataAsideAndJoinsAgain(t *testing.T) {
	stores, opts := threeMembers(t)
	defer stores["node-a"].Close()
	defer stores["node-b"].Close()
	require.NoError(t, stores["node-c"].Close())
	_, err := stores["node-a"].RemoveMember(context.Background(), "node-c", false)
	require.NoError(t, err)
	voters(t, stores["node-a"], 2)

	c := start(t, opts["node-c"]) // back, over the data of its removed member
	defer c.Close()
	voters(t, stores["node-a"], 3)
	aside, err := filepath.Glob(opts["node-c"].Dir + ".removed-*")
	require.NoError(t, err)
	assert.Len(t, aside, 1, "the stale data is kept aside, not deleted")
}

func TestAVoterDownTooLongIsReplacedByAClientNode(t *testing.T) {
	var mu sync.Mutex
	downSince := map[string]time.Time{}
	roster := func(o *embedded.Options) {
		o.ReplaceAfter = time.Second
		o.Roster = func() ([]string, map[string]time.Time) {
			mu.Lock()
			defer mu.Unlock()
			alive := []string{}
			for _, n := range []string{"node-a", "node-b", "node-c", "node-d"} {
				if _, down := downSince[n]; !down {
					alive = append(alive, n)
				}
			}
			return alive, maps.Clone(downSince)
		}
	}
	stores, opts := threeMembers(t, roster)
	defer stores["node-a"].Close()
	defer stores["node-b"].Close()
	d := start(t, opts["node-d"])
	defer d.Close()
	require.Equal(t, embedded.RoleClient, d.Role(), "three voters: node-d is a client")

	require.NoError(t, stores["node-c"].Close())
	mu.Lock()
	downSince["node-c"] = time.Now()
	mu.Unlock()
	var names []string
	require.Eventually(t, func() bool {
		ms, err := stores["node-a"].Members(context.Background())
		if err != nil {
			return false
		}
		names = names[:0]
		for _, m := range ms {
			if m.Role == embedded.RoleVoter && m.Started {
				names = append(names, m.Name)
			}
		}
		return slices.Equal(names, []string{"node-a", "node-b", "node-d"})
	}, 30*time.Second, 200*time.Millisecond, "node-c's seat goes to node-d; voters now %v", names)
	require.Eventually(t, func() bool { return d.Role() == embedded.RoleVoter }, 10*time.Second, 100*time.Millisecond)
}

func TestAMemberRemovedWhileItRunsGoesOnAsAClientWithItsStaleDataSetAside(t *testing.T) {
	ctx := context.Background()
	stores, opts := threeMembers(t)
	for _, s := range stores {
		defer s.Close()
	}
	c := stores["node-c"]
	require.Eventually(t, func() bool { // as the leader does for a member cut off too long
		_, err := stores["node-a"].RemoveMember(ctx, "node-c", true)
		return err == nil // "unhealthy cluster" while the members are new
	}, 20*time.Second, 500*time.Millisecond)
	require.Eventually(t, func() bool {
		aside, _ := filepath.Glob(opts["node-c"].Dir + ".removed-*")
		return c.Role() == embedded.RoleClient && len(aside) == 1 // kept aside, not deleted
	}, 30*time.Second, 100*time.Millisecond, "node-c a client, its stale data set aside")
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := c.Txn(wctx, nil, []cluster.Op{cluster.Put("drayage/volumes/from-c", []byte("x"))})
	require.NoError(t, err, "node-c goes on as a client of the others")
}
