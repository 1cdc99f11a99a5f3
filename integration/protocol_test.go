package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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

// A node whose protocol range does not meet this one's is refused: at start, by the
// store's records, and on every call between them, with both nodes and both versions
// named, and 'drayage node ls' flags it. A node of a next release that speaks this one's
// version too works with it, volumes moving both ways; once every node speaks the next
// version, the store's records are raised to it, once, and a node of this release is
// refused at start.
func TestANodeOfAnotherProtocolIsRefusedNamingBothVersions(t *testing.T) {
	etcd := storetest.StartEtcd(t, storetest.ServerOptions{})
	nodes := startHostCluster(t, etcd.URL, []string{"node-1", "node-2"})
	n1, n2 := nodes[0], nodes[1]
	n1.create(t, "db", "rows", nil)

	n2.kill(syscall.SIGTERM)
	v99 := protocolBinary(t, "99")
	out := startRefused(t, n2, v99)
	assert.Contains(t, out, `node "node-2" speaks protocol 99, but the cluster store's records are at version 1, which this release no longer reads`)

	// On records of its own (another prefix) it runs, and still gossips with node-1:
	// every call between them is refused.
	args := n2.args
	n2.args = append(slices.Clip(args), "--store-prefix", "elsewhere/")
	n2.bin = v99
	n2.start()
	n2.args = args
	var ls string
	eventually(t, timeout, "node-1 to see node-2 alive, and its protocol", func() bool {
		ls = n1.drayage(t, "node", "ls")
		return strings.Contains(ls, "99 (differs from 1)") && nodeList(t, n1.root)["node-2"].State == "alive" &&
			strings.Contains(ls, `speaks protocol 99`) // the control column says why node-2 does not answer
	})
	t.Logf("drayage node ls on node-1:\n%s", ls)

	out = n1.drayageFails(t, "volume", "move", "db", "--to", "node-2")
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
	assert.Contains(t, n1.drayage(t, "status"), "records at protocol 1", "the records stay at 1 while node-1 speaks only 1")

	// Once every node speaks 2, one of them raises the store's records to 2, once; from
	// then on a node of the release before is refused at start, naming both versions.
	n1.kill(syscall.SIGTERM)
	n1.bin = n2.bin
	n1.start()
	meshed(t, nodes)
	eventually(t, timeout, "the records to be raised to 2", func() bool {
		return strings.Contains(n1.drayage(t, "status"), "records at protocol 2")
	})
	raised := strings.Count(n1.logText()+n2.logText(), "raised the version of the cluster store's records")
	assert.Equal(t, 1, raised, "one node raised the records, once")

	n2.kill(syscall.SIGTERM)
	out = startRefused(t, n2, binary)
	assert.Contains(t, out, `node "node-2" speaks protocol 1, but the cluster store's records are at version 2 (raised by node "node-`)
	assert.Contains(t, out, `install a release that speaks 2 on node "node-2"`)

	n2.start() // the release that speaks 2 again: the volume still moves
	meshed(t, nodes)
	n1.drayage(t, "volume", "move", "db", "--to", "node-2")
	b, err = os.ReadFile(filepath.Join(n2.data("db"), "table"))
	require.NoError(t, err)
	assert.Equal(t, "rows", string(b))
}

// startRefused starts n's daemon from bin and returns what it said when it stopped, as
// it must at once.
func startRefused(t *testing.T, n *hostNode, bin string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"daemon", "--root", n.root, "--socket", n.socket, "--name", n.name}, n.args...)...)
	out, err := cmd.CombinedOutput()
	require.Error(t, err, "node %s started with %s: %s", n.name, bin, out)
	require.NoError(t, ctx.Err(), "it stops at once")
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	t.Logf("node %s refused to start: %s", n.name, lines[len(lines)-1])
	return string(out)
}
