package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/cluster/identity"
)

func drayage(args ...string) (string, error) {
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestTLSInitWritesWhatEachNodeNeedsAndNeverReplacesTheCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	out, err := drayage("tls", "init", "--dir", dir, "--nodes", "node-a,node-b", "--ip", "node-a=10.0.0.1", "--dns", "node-b=b.example")
	require.NoError(t, err, out)
	assert.Contains(t, out, "node node-a: "+filepath.Join(dir, "node-a")+" (names node-a, 10.0.0.1;")
	assert.Contains(t, out, "(names node-b, b.example;")
	for _, n := range []string{"node-a", "node-b"} {
		entries, err := os.ReadDir(filepath.Join(dir, n))
		require.NoError(t, err)
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		assert.ElementsMatch(t, []string{"ca.pem", "node.pem", "node-key.pem", "gossip.key"}, names, "exactly what --tls-dir needs")
		_, err = identity.Load(filepath.Join(dir, n), n)
		require.NoError(t, err)
	}

	_, err = drayage("tls", "init", "--dir", dir, "--nodes", "node-c")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "never replaced silently")
	assert.NoDirExists(t, filepath.Join(dir, "node-c"))

	out, err = drayage("tls", "add-node", "node-c", "--dir", dir)
	require.NoError(t, err, out)
	c, err := identity.Load(filepath.Join(dir, "node-c"), "node-c")
	require.NoError(t, err)
	a, err := identity.Load(filepath.Join(dir, "node-a"), "node-a")
	require.NoError(t, err)
	assert.Equal(t, a.GossipKey(), c.GossipKey(), "one gossip key for the cluster")

	_, err = drayage("tls", "add-node", "node-c", "--dir", dir)
	require.ErrorContains(t, err, "use --force")
	serial := c.Certificate().SerialNumber
	_, err = drayage("tls", "add-node", "node-c", "--dir", dir, "--force")
	require.NoError(t, err)
	c, err = identity.Load(filepath.Join(dir, "node-c"), "node-c")
	require.NoError(t, err)
	assert.NotEqual(t, serial, c.Certificate().SerialNumber, "renewed")

	out, err = drayage("tls", "show", "--tls-dir", filepath.Join(dir, "node-c"))
	require.NoError(t, err)
	assert.Contains(t, out, "node node-c")
}

func TestTLSInitRefusesAddressesOfUnknownNodes(t *testing.T) {
	_, err := drayage("tls", "init", "--dir", t.TempDir(), "--nodes", "a", "--ip", "b=10.0.0.2")
	require.ErrorContains(t, err, `node "b" is not one of a`)
	_, err = drayage("tls", "init", "--dir", t.TempDir(), "--nodes", "a", "--ip", "a=nope")
	require.ErrorContains(t, err, "not an IP address")
	_, err = drayage("tls", "init", "--dir", t.TempDir(), "--nodes", "../x")
	require.ErrorContains(t, err, `node name "../x"`)
}
