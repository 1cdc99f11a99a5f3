package integration

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"slices"
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

// voters waits until node n sees three started voting members that all answer, one of
// them the leader, and returns their names (sorted) and the leader's.
func voters(t *testing.T, n *node) ([]string, string) {
	t.Helper()
	var last []control.StoreMember
	var lastErr error
	deadline := time.Now().Add(3 * timeout)
	for {
		ms, err := storeMembers(t, n)
		last, lastErr = ms, err
		var names []string
		leader, ok := "", err == nil
		for _, m := range ms {
			if m.Role != "voter" || !m.Started || !m.Reachable {
				ok = false
			}
			names = append(names, m.Name)
			if m.Leader {
				leader = m.Name
			}
		}
		if ok && len(names) == 3 && leader != "" {
			return names, leader
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s does not see three voting store members that answer, and a leader, after %s; last it saw %+v (err %v)",
				n.name, 3*timeout, last, lastErr)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// createOn makes a volume on node n through its engine; it fails the test if it can't.
func createOn(t *testing.T, n *node, name string) {
	t.Helper()
	n.docker("volume", "create", "-d", nodePlugin, name)
}

// lists waits until node n lists every one of the volumes.
func lists(t *testing.T, n *node, volumes ...string) {
	t.Helper()
	eventually(t, 2*timeout, "node "+n.name+" to list "+strings.Join(volumes, ", "), func() bool {
		out, err := tryRun(binary, "--root", n.state, "volume", "ls")
		if err != nil {
			return false
		}
		for _, v := range volumes {
			if !strings.Contains(out, v) {
				return false
			}
		}
		return true
	})
}

// Nodes with only DRAYAGE_STORE=embedded and DRAYAGE_JOIN form one store cluster over
// mutual TLS (three voters, the fourth node a client), and it survives what a cluster
// must: its leader's crash, a voter cut off (replaced meanwhile by the spare node, after
// DRAYAGE_STORE_REPLACE_AFTER; healed, it goes on as a client), and two voters down (no
// quorum, said as such, until one returns). One cluster for all, phase after phase;
// which nodes vote changes as they are replaced, so the phases pick them as they are.
func TestTheEmbeddedStoreIsAClusterThatSurvivesItsNodesFaults(t *testing.T) {
	began := time.Now()
	phase := func(what string) { t.Logf("%s: %s", time.Since(began).Round(100*time.Millisecond), what) }
	nodes := startNodes(t, embeddedStore, []string{"node-a", "node-b", "node-c", "node-d"}, "DRAYAGE_STORE_REPLACE_AFTER=10s")
	byName := map[string]*node{}
	for _, n := range nodes {
		byName[n.name] = n
	}
	a, d := byName["node-a"], byName["node-d"]
	split := func() (leader *node, followers, spares []*node) {
		names, l := voters(t, a)
		for _, n := range nodes {
			switch {
			case n.name == l:
				leader = n
			case slices.Contains(names, n.name):
				followers = append(followers, n)
			default:
				spares = append(spares, n)
			}
		}
		return leader, followers, spares
	}

	// Formation: the first three nodes vote, on their addresses over TLS; node-d is a client.
	names, leaderName := voters(t, a)
	require.Equal(t, []string{"node-a", "node-b", "node-c"}, names)
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
	leader, followers, _ := split()
	x, y := followers[0], followers[1]
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
	voters(t, leader)
	lists(t, leader, "before", "after")
	phase("leader crashed, the others went on, it came back and caught up")

	// A voter cut off: it decides nothing and says why; the leader gives its seat to the
	// spare node after DRAYAGE_STORE_REPLACE_AFTER; healed, it goes on as a client.
	_, followers, spares := split()
	require.NotEmpty(t, spares)
	v := followers[0]
	v.cut()
	time.Sleep(8 * time.Second) // past the lease TTL (5s)
	asked := time.Now()
	out := mustFail(t, "docker", "-H", v.engine.host, "volume", "create", "-d", nodePlugin, "cut-off")
	assert.Contains(t, out, "lost its quorum", "the cut-off voter decides nothing, and says why")
	t.Logf("docker volume create on the cut-off voter failed %s later: %s", time.Since(asked).Round(time.Millisecond), strings.TrimSpace(out))
	createOn(t, followers[1], "during-cut")
	names, _ = voters(t, spares[0])
	assert.NotContains(t, names, v.name, "the cut-off voter's seat went to another node")
	assert.Contains(t, names, spares[0].name, "the spare node took the seat")
	v.heal()
	for deadline := time.Now().Add(2 * timeout); ; time.Sleep(200 * time.Millisecond) {
		st, err := tryRun(binary, "--root", v.state, "status")
		aside, _ := filepath.Glob(filepath.Join(v.state, "store.removed-*"))
		if err == nil && strings.Contains(st, "this node a client") && len(aside) == 1 {
			break
		}
		if time.Now().After(deadline) {
			var said []string
			for _, l := range strings.Split(v.log(), "\n") {
				if strings.Contains(l, "store") && !strings.Contains(l, "gossip") {
					said = append(said, l)
				}
			}
			t.Fatalf("healed, node %s does not go on as a client with its stale data set aside (%d set aside); status:\n%s\nits log of the store:\n%s",
				v.name, len(aside), st, strings.Join(said[max(0, len(said)-25):], "\n"))
		}
	}
	lists(t, v, "during-cut", "after", "before")
	assert.NotContains(t, v.drayage("volume", "ls"), "cut-off", "nothing was created while it was cut off")
	assert.Equal(t, "two", strings.TrimSpace(v.run("-v", "after:/data", testImage, "cat", "/data/f")))
	phase("a voter cut off decided nothing, lost its seat, and goes on as a client")

	// Two voters down: no quorum, and every answer says so; one back, it works.
	standing, followers, _ := split() // the leader stands; its two followers go down
	followers[0].crash()
	followers[1].crash()
	out = mustFail(t, "docker", "-H", standing.engine.host, "volume", "create", "-d", nodePlugin, "noquorum")
	assert.Contains(t, out, "lost its quorum", "the Docker error says why")
	assert.Contains(t, out, "a majority (2) must run")
	assert.Contains(t, standing.drayage("status"), "NO QUORUM")
	t.Logf("docker volume create without quorum: %s", strings.TrimSpace(out))
	followers[0].restart()
	eventually(t, 2*timeout, "a volume create once one voter is back", func() bool {
		_, err := tryRun("docker", "-H", standing.engine.host, "volume", "create", "-d", nodePlugin, "quorum-again")
		return err == nil
	})
	followers[1].restart()
	voters(t, followers[1])
	lists(t, followers[1], "quorum-again", "during-cut")
	phase("no quorum said as such; back with one voter")
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
