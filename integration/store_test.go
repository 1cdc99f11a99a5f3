package integration

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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

// threeVoters waits until node n sees the store cluster as three started, reachable
// voting members with one leader, and returns the leader's name.
func threeVoters(t *testing.T, n *node) string {
	t.Helper()
	leader := ""
	eventually(t, 2*timeout, "node "+n.name+" to see three voting store members and a leader", func() bool {
		ms, err := storeMembers(t, n)
		if err != nil || len(ms) != 3 {
			return false
		}
		leader = ""
		for _, m := range ms {
			if m.Role != "voter" || !m.Started || !m.Reachable {
				return false
			}
			if m.Leader {
				leader = m.Name
			}
		}
		return leader != ""
	})
	return leader
}

// Three nodes with only DRAYAGE_STORE=embedded and DRAYAGE_JOIN form one store cluster
// over mutual TLS; a crash of its leader's node changes nothing for the other two but a
// leader election; the crashed node comes back and catches up. Two voters down, the
// store has no quorum and every answer says so, until one returns.
func TestTheEmbeddedStoreIsAClusterThatSurvivesItsLeadersCrash(t *testing.T) {
	nodes := startNodes(t, embeddedStore, []string{"node-a", "node-b", "node-c"})
	byName := map[string]*node{}
	for _, n := range nodes {
		byName[n.name] = n
	}
	leaderName := threeVoters(t, nodes[0])
	ms, err := storeMembers(t, nodes[1])
	require.NoError(t, err)
	for _, m := range ms {
		require.Len(t, m.ClientURLs, 1)
		assert.True(t, strings.HasPrefix(m.ClientURLs[0], "https://"+byName[m.Name].addr+":"), "member %s serves TLS on its node's address: %v", m.Name, m.ClientURLs)
		assert.True(t, strings.HasPrefix(m.PeerURLs[0], "https://"), "member %s's peers speak TLS: %v", m.Name, m.PeerURLs)
	}
	t.Logf("store ls on %s:\n%s", nodes[1].name, nodes[1].drayage("store", "ls"))

	leader := byName[leaderName]
	var survivors []*node
	for _, n := range nodes {
		if n != leader {
			survivors = append(survivors, n)
		}
	}
	x, y := survivors[0], survivors[1]
	x.docker("volume", "create", "-d", nodePlugin, "before")
	x.run("-v", "before:/data", testImage, "sh", "-c", "echo one > /data/f")

	// The leader's node dies at once (engine, plugin, store member).
	leader.crash()
	crashed := time.Now()
	var took time.Duration
	eventually(t, 2*timeout, "a volume create and a mount on a survivor after the leader's crash", func() bool {
		if _, err := tryRun("docker", "-H", x.engine.host, "volume", "create", "-d", nodePlugin, "after"); err != nil {
			return false
		}
		took = time.Since(crashed)
		return true
	})
	t.Logf("first volume create after the store leader's crash: %s later", took.Round(10*time.Millisecond))
	x.run("-v", "after:/data", testImage, "sh", "-c", "echo two > /data/f")
	// Moves both ways between the survivors, on the two remaining voters.
	assert.Equal(t, "one", strings.TrimSpace(y.run("-v", "before:/data", testImage, "cat", "/data/f")))
	assert.Equal(t, "two", strings.TrimSpace(y.run("-v", "after:/data", testImage, "cat", "/data/f")))
	assert.Equal(t, "one", strings.TrimSpace(x.run("-v", "before:/data", testImage, "cat", "/data/f")))

	// The crashed node comes back as the same member and sees every record.
	leader.restart()
	threeVoters(t, leader)
	eventually(t, timeout, "the returned node to list the volumes made while it was down", func() bool {
		out, err := tryRun(binary, "--root", leader.state, "volume", "ls")
		return err == nil && strings.Contains(out, "after") && strings.Contains(out, "before")
	})
	assert.Equal(t, "two", strings.TrimSpace(leader.run("-v", "after:/data", testImage, "cat", "/data/f")), "and mounts one, pulled from its owner")

	// Two of three voters down: the store has no quorum, and says so; one back, it works.
	x.crash()
	y.crash()
	out := mustFail(t, "docker", "-H", leader.engine.host, "volume", "create", "-d", nodePlugin, "noquorum")
	assert.Contains(t, out, "lost its quorum", "the Docker error says why")
	assert.Contains(t, out, "a majority (2) must run")
	status := leader.drayage("status")
	assert.Contains(t, status, "NO QUORUM")
	t.Logf("docker volume create without quorum: %s", out)
	x.restart()
	eventually(t, 2*timeout, "a volume create once one voter is back", func() bool {
		_, err := tryRun("docker", "-H", leader.engine.host, "volume", "create", "-d", nodePlugin, "quorum-again")
		return err == nil
	})
	y.restart()
	threeVoters(t, y)
}
