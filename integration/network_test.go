package integration

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/cluster/identity"
	"github.com/drayage/drayage/cluster/storetest"
	"github.com/drayage/drayage/daemon/control"
)

// netNode is a daemon on the host with its ports.
type netNode struct {
	*legacyDaemon
	gossip, control int
}

func nodeList(t testing.TB, root string) map[string]control.NodeInfo {
	t.Helper()
	m, err := tryNodeList(root)
	require.NoError(t, err)
	return m
}

// tryNodeList is nodeList that returns what went wrong.
func tryNodeList(root string) (map[string]control.NodeInfo, error) {
	out, err := tryRun(binary, "--root", root, "node", "ls", "--json")
	if err != nil {
		return nil, fmt.Errorf("%w: %s", err, out)
	}
	var nodes []control.NodeInfo
	if err := json.Unmarshal([]byte(out), &nodes); err != nil {
		return nil, fmt.Errorf("%w: %s", err, out)
	}
	m := map[string]control.NodeInfo{}
	for _, n := range nodes {
		m[n.Name] = n
	}
	return m, nil
}

// startNetNode starts a cluster node's daemon on the host, serving no engine (its plugin
// socket is ROOT.sock); more are more daemon flags.
func startNetNode(t testing.TB, name, base, tlsDir, storeURL string, join int, cluster string, more ...string) *netNode {
	n := &netNode{gossip: storetest.FreePort(t), control: storetest.FreePort(t)}
	args := []string{"--store", storeURL, "--tls-dir", tlsDir, "--advertise", "127.0.0.1", "--cluster", cluster,
		"--gossip-port", strconv.Itoa(n.gossip), "--control-port", strconv.Itoa(n.control),
		"--data-port", strconv.Itoa(storetest.FreePort(t)), "--probe-interval", "200ms", "--lease-ttl", "2s"}
	if join != 0 {
		args = append(args, "--join", fmt.Sprintf("127.0.0.1:%d", join))
	}
	args = append(args, more...)
	n.legacyDaemon = startLegacy(t, nil, name, "", filepath.Join(base, name), args...)
	return n
}

func TestThreeNodesFormAClusterOverMutualTLSAndGossip(t *testing.T) {
	etcd := storetest.StartEtcd(t, storetest.ServerOptions{})
	base := t.TempDir()
	pki := filepath.Join(base, "pki")
	run(t, binary, "tls", "init", "--dir", pki, "--nodes", "node-1,node-2,node-3", "--ip", "node-1=127.0.0.1,node-2=127.0.0.1,node-3=127.0.0.1")
	n1 := startNetNode(t, "node-1", base, filepath.Join(pki, "node-1"), etcd.URL, 0, "it")
	n2 := startNetNode(t, "node-2", base, filepath.Join(pki, "node-2"), etcd.URL, n1.gossip, "it")
	n3 := startNetNode(t, "node-3", base, filepath.Join(pki, "node-3"), etcd.URL, n1.gossip, "it")

	// Everyone finds everyone from the one seed, and reaches their control ports.
	for _, n := range []*netNode{n1, n2, n3} {
		eventually(t, timeout, n.name+" to see three live nodes answering over mutual TLS", func() bool {
			nodes := nodeList(t, n.root)
			for _, name := range []string{"node-1", "node-2", "node-3"} {
				m := nodes[name]
				if m.State != "alive" || (!m.Self && m.Reach != "ok") {
					return false
				}
			}
			return true
		})
	}
	nodes := nodeList(t, n3.root)
	assert.Equal(t, fmt.Sprintf("127.0.0.1:%d", n1.control), nodes["node-1"].Control)
	assert.True(t, nodes["node-3"].Self)
	assert.Contains(t, run(t, binary, "--root", n3.root, "node", "ls"), "node-3 (this node)")

	// Handshakes another cluster's node, or a plaintext client, tries are refused and
	// logged with the reason.
	other := filepath.Join(base, "other")
	run(t, binary, "tls", "init", "--dir", other, "--nodes", "node-4")
	intruder, err := tls.LoadX509KeyPair(filepath.Join(other, "node-4", identity.NodeCertFile), filepath.Join(other, "node-4", identity.NodeKeyFile))
	require.NoError(t, err)
	conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", n1.control), &tls.Config{
		Certificates: []tls.Certificate{intruder}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13, NextProtos: []string{"h2"},
	})
	if err == nil {
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	require.Error(t, err)
	eventually(t, timeout, "node-1 to log the foreign certificate", func() bool {
		return strings.Contains(n1.logText(), "certificate not signed by this cluster's CA")
	})
	raw, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", n1.control))
	require.NoError(t, err)
	_, _ = raw.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	raw.Close()
	eventually(t, timeout, "node-1 to log the plaintext attempt", func() bool {
		return strings.Contains(n1.logText(), "not TLS (plaintext?)")
	})

	// A node of another cluster (its own CA and gossip key) is never admitted.
	outsider := startNetNode(t, "node-4", base, filepath.Join(other, "node-4"), etcd.URL, n1.gossip, "it")
	eventually(t, timeout, "the outsider to be refused", func() bool { return strings.Contains(outsider.logText(), "no seed answered") })
	assert.NotEqual(t, "alive", nodeList(t, n1.root)["node-4"].State, "the outsider is not in the roster")
	assert.Empty(t, nodeList(t, n1.root)["node-4"].Address, "gossip never heard of it")

	// Rotation: node-1 gets a new certificate; SIGHUP loads it; peers reach it still.
	before := serialAt(t, pki, "node-3", n1.control)
	run(t, binary, "tls", "add-node", "node-1", "--dir", pki, "--force", "--ip", "node-1=127.0.0.1")
	require.NoError(t, n1.cmd.Process.Signal(syscall.SIGHUP))
	eventually(t, timeout, "node-1 to serve its new certificate", func() bool { return serialAt(t, pki, "node-3", n1.control) != before })
	assert.Contains(t, n1.logText(), "reloaded node certificate")
	assert.Equal(t, "ok", nodeList(t, n3.root)["node-1"].Reach)

	// node-2 is killed: the others report it dead, and when it was last seen.
	n2.kill(syscall.SIGKILL)
	killed := time.Now()
	eventually(t, timeout, "node-1 and node-3 to report node-2 dead", func() bool {
		return nodeList(t, n1.root)["node-2"].State == "dead" && nodeList(t, n3.root)["node-2"].State == "dead"
	})
	t.Logf("node-2 reported dead %s after SIGKILL (probe interval 200ms)", time.Since(killed).Round(100*time.Millisecond))
	assert.WithinDuration(t, killed, nodeList(t, n1.root)["node-2"].LastSeen, 5*time.Second)
}

// serialAt is the serial of the certificate the node at port presents to node from.
func serialAt(t testing.TB, pki, from string, port int) string {
	t.Helper()
	id, err := identity.Load(filepath.Join(pki, from), from)
	require.NoError(t, err)
	cfg := id.ClientConfig("node-1")
	cfg.NextProtos = []string{"h2"}
	conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port), cfg)
	require.NoError(t, err)
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
}
