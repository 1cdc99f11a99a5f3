package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/cluster/storetest"
)

// protocolBinary builds drayage claiming to speak only protocol version v, as a release
// that dropped this one's would.
func protocolBinary(t *testing.T, v string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "drayage-protocol-"+v)
	cmd := exec.Command("go", "build", "-ldflags", "-X github.com/drayage/drayage/protocol.forced="+v, "-o", bin, "./cmd/drayage")
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "build a drayage of protocol %s: %s", v, out)
	return bin
}

// A node whose protocol range does not meet this one's is flagged by 'drayage node ls'
// and refused, with both nodes and both versions named; a node of a next release that
// speaks this one's version too works with it, volumes moving both ways.
func TestANodeOfAnotherProtocolIsRefusedNamingBothVersions(t *testing.T) {
	etcd := storetest.StartEtcd(t, storetest.ServerOptions{})
	nodes := startHostCluster(t, etcd.URL, []string{"node-1", "node-2"})
	n1, n2 := nodes[0], nodes[1]
	n1.create(t, "db", "rows", nil)

	n2.kill(syscall.SIGTERM)
	n2.bin = protocolBinary(t, "99")
	n2.start()
	var ls string
	eventually(t, timeout, "node-1 to see node-2's protocol", func() bool {
		ls = n1.drayage(t, "node", "ls")
		return strings.Contains(ls, "99 (differs from 1)")
	})
	t.Logf("drayage node ls on node-1:\n%s", ls)
	assert.Contains(t, ls, `speaks protocol 99`, "the control column says why node-2 does not answer")

	out := n1.drayageFails(t, "volume", "move", "db", "--to", "node-2")
	assert.Contains(t, out, `node "node-2" speaks protocol 99 and node "node-1" speaks 1; upgrade node "node-1"`)
	t.Logf("drayage volume move on node-1: %s", out)
	assert.Equal(t, "node-1", inspect(t, n1.root, "db").Node, "the volume stays where it was")

	// A next release speaks this one's version too: the nodes work together, and the
	// volume moves both ways.
	n2.kill(syscall.SIGTERM)
	n2.bin = protocolBinary(t, "1-2")
	n2.start()
	meshed(t, nodes)
	assert.Contains(t, n1.drayage(t, "node", "ls"), "1-2 (differs from 1)")
	n1.drayage(t, "volume", "move", "db", "--to", "node-2")
	b, err := os.ReadFile(filepath.Join(n2.data("db"), "table"))
	require.NoError(t, err)
	assert.Equal(t, "rows", string(b))
	n2.drayage(t, "volume", "move", "db", "--to", "node-1")
	b, err = os.ReadFile(filepath.Join(n1.data("db"), "table"))
	require.NoError(t, err)
	assert.Equal(t, "rows", string(b))
}
