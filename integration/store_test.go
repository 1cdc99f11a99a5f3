package integration

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/cluster/etcdstore"
	"github.com/drayage/drayage/cluster/identity"
	"github.com/drayage/drayage/daemon/control"
)

// storeMembers is 'drayage store ls --json' on node n.
func storeMembers(t *testing.T, n *node) ([]control.StoreMember, error) {
	t.Helper()
	out, err := tryRun(binary, "--root", n.state, "store", "ls", "--json")
	if err != nil {
		return nil, err
	}
	var ms []control.StoreMember
	return ms, json.Unmarshal([]byte(out), &ms)
}

// votersAre waits until node n sees exactly the named nodes as the store's voting
// members, all answering, one of them the leader, and returns the leader's name.
func votersAre(t *testing.T, n *node, names ...string) string {
	t.Helper()
	var last []control.StoreMember
	var lastErr error
	deadline := time.Now().Add(3 * timeout)
	for {
		ms, err := storeMembers(t, n)
		last, lastErr = ms, err
		var voters []string
		leader, ok := "", err == nil
		for _, m := range ms {
			if m.Role != "voter" || !m.Started || !m.Reachable {
				ok = false
			}
			voters = append(voters, m.Name)
			if m.Leader {
				leader = m.Name
			}
		}
		if ok && strings.Join(voters, ",") == strings.Join(names, ",") && leader != "" {
			return leader
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s does not see the store's voters %s and a leader after %s; last it saw %+v (err %v)",
				n.name, strings.Join(names, ", "), 3*timeout, last, lastErr)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// createOn makes a volume on node n through its engine; it fails the test if it can't.
func createOn(t *testing.T, n *node, name string) {
	t.Helper()
	n.docker("volume", "create", "-d", nodePlugin, name)
}

// Nodes with only DRAYAGE_STORE=embedded and DRAYAGE_JOIN form one store cluster over
// mutual TLS (three voters, a fourth node a client), and it survives what a cluster
// must: its leader's crash, a voter cut off, two voters down (no quorum, said as such),
// and a voter gone for good (replaced by the client node; back, it rejoins cleanly). One
// cluster for all, phase after phase.
func TestTheEmbeddedStoreIsAClusterThatSurvivesItsNodesFaults(t *testing.T) {
	began := time.Now()
	phase := func(what string) { t.Logf("%s: %s", time.Since(began).Round(100*time.Millisecond), what) }
	nodes := startNodes(t, embeddedStore, []string{"node-a", "node-b", "node-c", "node-d"}, "DRAYAGE_STORE_REPLACE_AFTER=10s")
	byName := map[string]*node{}
	for _, n := range nodes {
		byName[n.name] = n
	}
	a, d := byName["node-a"], byName["node-d"]

	// Formation: three voters on their nodes' addresses over TLS; node-d a client.
	leaderName := votersAre(t, a, "node-a", "node-b", "node-c")
	phase("three voters, leader " + leaderName)
	ms, err := storeMembers(t, d)
	require.NoError(t, err)
	for _, m := range ms {
		require.Len(t, m.ClientURLs, 1)
		assert.True(t, strings.HasPrefix(m.ClientURLs[0], "https://"+byName[m.Name].addr+":"), "member %s serves TLS on its node's address: %v", m.Name, m.ClientURLs)
		assert.True(t, strings.HasPrefix(m.PeerURLs[0], "https://"), "member %s's peers speak TLS: %v", m.Name, m.PeerURLs)
		assert.False(t, m.Self, "node-d runs no member")
	}
	assert.Contains(t, d.drayage("status"), "this node a client")
	t.Logf("store ls on node-d:\n%s", d.drayage("store", "ls"))
	refusesStrangers(t, a, strings.TrimPrefix(ms[0].ClientURLs[0], "https://"), strings.TrimPrefix(ms[0].PeerURLs[0], "https://"))
	phase("the store's ports refuse what is not a node of the cluster")

	// The leader's node crashes: a leader election, and the others go on.
	leader := byName[leaderName]
	var x, y *node
	for _, n := range []*node{a, byName["node-b"], byName["node-c"]} {
		if n != leader && x == nil {
			x = n
		} else if n != leader {
			y = n
		}
	}
	createOn(t, x, "before")
	x.run("-v", "before:/data", testImage, "sh", "-c", "echo one > /data/f")
	leader.crash()
	crashed := time.Now()
	var took time.Duration
	eventually(t, 2*timeout, "a volume create on a survivor after the leader's crash", func() bool {
		if _, err := tryRun("docker", "-H", x.engine.host, "volume", "create", "-d", nodePlugin, "after"); err != nil {
			return false
		}
		took = time.Since(crashed)
		return true
	})
	t.Logf("first volume create after the store leader's crash: %s later", took.Round(10*time.Millisecond))
	x.run("-v", "after:/data", testImage, "sh", "-c", "echo two > /data/f")
	assert.Equal(t, "one", strings.TrimSpace(y.run("-v", "before:/data", testImage, "cat", "/data/f")))
	assert.Equal(t, "two", strings.TrimSpace(d.run("-v", "after:/data", testImage, "cat", "/data/f")), "the client node too")
	leader.restart()
	votersAre(t, leader, "node-a", "node-b", "node-c")
	eventually(t, timeout, "the returned node to list the volumes made while it was down", func() bool {
		out, err := tryRun(binary, "--root", leader.state, "volume", "ls")
		return err == nil && strings.Contains(out, "after") && strings.Contains(out, "before")
	})
	phase("leader crashed, the others went on, it came back and caught up")

	// A voter cut off longer than the lease TTL: it decides nothing; the others go on.
	v := byName[votersAre(t, a, "node-a", "node-b", "node-c")]
	for _, n := range []*node{a, byName["node-b"], byName["node-c"]} {
		if n != v {
			v = n // a follower
			break
		}
	}
	others := []*node{}
	for _, n := range []*node{a, byName["node-b"], byName["node-c"]} {
		if n != v {
			others = append(others, n)
		}
	}
	v.cut()
	time.Sleep(8 * time.Second) // past the lease TTL (5s)
	asked := time.Now()
	out := mustFail(t, "docker", "-H", v.engine.host, "volume", "create", "-d", nodePlugin, "cut-off")
	assert.Contains(t, out, "lost its quorum", "the cut-off voter decides nothing, and says why")
	t.Logf("docker volume create on the cut-off voter failed %s later: %s", time.Since(asked).Round(time.Millisecond), strings.TrimSpace(out))
	createOn(t, others[0], "during-cut")
	v.heal()
	eventually(t, 2*timeout, "the healed voter to see the volume made while it was cut off", func() bool {
		out, err := tryRun(binary, "--root", v.state, "volume", "ls")
		return err == nil && strings.Contains(out, "during-cut") && !strings.Contains(out, "cut-off ")
	})
	votersAre(t, v, "node-a", "node-b", "node-c")
	phase("a voter cut off decided nothing; healed, it caught up")

	// Two voters down: no quorum, and every answer says so; one back, it works.
	others[0].crash()
	others[1].crash()
	out = mustFail(t, "docker", "-H", v.engine.host, "volume", "create", "-d", nodePlugin, "noquorum")
	assert.Contains(t, out, "lost its quorum", "the Docker error says why")
	assert.Contains(t, out, "a majority (2) must run")
	assert.Contains(t, v.drayage("status"), "NO QUORUM")
	t.Logf("docker volume create without quorum: %s", strings.TrimSpace(out))
	others[0].restart()
	eventually(t, 2*timeout, "a volume create once one voter is back", func() bool {
		_, err := tryRun("docker", "-H", v.engine.host, "volume", "create", "-d", nodePlugin, "quorum-again")
		return err == nil
	})
	others[1].restart()
	votersAre(t, v, "node-a", "node-b", "node-c")
	phase("no quorum said as such; back with one voter")

	// A voter gone for longer than DRAYAGE_STORE_REPLACE_AFTER: node-d takes its seat.
	gone := byName["node-c"]
	gone.crash()
	votersAre(t, a, "node-a", "node-b", "node-d")
	phase("node-c's seat went to node-d")
	gone.restart()
	aside, _ := filepath.Glob(filepath.Join(gone.state, "store.removed-*"))
	assert.Len(t, aside, 1, "node-c set its removed member's data aside")
	eventually(t, timeout, "node-c to run as a client of the new voters", func() bool {
		out, err := tryRun(binary, "--root", gone.state, "status")
		return err == nil && strings.Contains(out, "this node a client") && strings.Contains(out, "3 voters")
	})
	assert.Equal(t, "two", strings.TrimSpace(gone.run("-v", "after:/data", testImage, "cat", "/data/f")))
	phase("node-c came back as a client and mounts volumes")
}

// refusesStrangers checks that the store's client and peer ports, on a node of the
// cluster, refuse a client of another CA, one without a certificate and plaintext,
// and admit a node of the cluster.
func refusesStrangers(t *testing.T, n *node, clientAddr, peerAddr string) {
	t.Helper()
	open := func(tc *tls.Config) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := etcdstore.Open(ctx, etcdstore.Options{Endpoints: []string{clientAddr}, TLS: tc, DialTimeout: 2 * time.Second})
		if err != nil {
			return err
		}
		defer s.Close()
		_, err = s.Get(ctx, "drayage/x")
		if err != nil && !strings.Contains(err.Error(), cluster.ErrNotFound.Error()) {
			return err
		}
		return nil
	}
	own, err := identity.Load(n.tls, n.name)
	require.NoError(t, err)
	require.NoError(t, open(own.MemberClientConfig()), "a node of the cluster is admitted")

	dir := t.TempDir()
	ca, err := identity.NewCA("stranger")
	require.NoError(t, err)
	key, err := identity.NewGossipKey()
	require.NoError(t, err)
	require.NoError(t, ca.WriteNode(filepath.Join(dir, n.name), identity.NodeSpec{Name: n.name, IPs: []net.IP{net.ParseIP(n.addr)}}, key))
	stranger, err := identity.Load(filepath.Join(dir, n.name), n.name)
	require.NoError(t, err)
	// The stranger trusts the cluster's CA (it read ca.pem) but holds a certificate of
	// its own CA: the server must refuse it.
	tc := stranger.ClientConfig(n.name)
	tc.VerifyConnection = nil
	tc.InsecureSkipVerify = true //nolint:gosec // the stranger doesn't check the server: only the server's refusal matters
	require.Error(t, open(tc), "a certificate of another CA is refused")
	noCert := own.MemberClientConfig()
	noCert.GetClientCertificate = nil
	require.Error(t, open(noCert), "no client certificate is refused")
	require.Error(t, open(nil), "plaintext is refused")

	for _, addr := range []string{clientAddr, peerAddr} {
		raw, err := net.DialTimeout("tcp", addr, 2*time.Second)
		require.NoError(t, err)
		_, _ = raw.Write([]byte("GET /members HTTP/1.1\r\nHost: x\r\n\r\n"))
		_ = raw.SetReadDeadline(time.Now().Add(2 * time.Second))
		b := make([]byte, 64)
		k, _ := raw.Read(b)
		raw.Close()
		assert.NotContains(t, string(b[:k]), "HTTP/1.1 200", "no plaintext answer on %s", addr)
	}
	_ = os.RemoveAll(dir)
}
