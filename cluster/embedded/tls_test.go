package embedded_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/cluster/backends"
	"github.com/drayage/drayage/cluster/embedded"
	"github.com/drayage/drayage/cluster/etcdstore"
	"github.com/drayage/drayage/cluster/identity"
	"github.com/drayage/drayage/cluster/storetest"
)

// identities makes a cluster CA and the TLS dirs of nodes, with 127.0.0.1 in their
// certificates, and loads them.
func identities(t testing.TB, cluster string, nodes ...string) (map[string]*identity.Identity, string) {
	t.Helper()
	ca, err := identity.NewCA(cluster)
	require.NoError(t, err)
	key, err := identity.NewGossipKey()
	require.NoError(t, err)
	dir := t.TempDir()
	ids := map[string]*identity.Identity{}
	for _, n := range nodes {
		require.NoError(t, ca.WriteNode(filepath.Join(dir, n), identity.NodeSpec{Name: n, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}, key))
		ids[n], err = identity.Load(filepath.Join(dir, n), n)
		require.NoError(t, err)
	}
	return ids, dir
}

// options are those of node id's store on loopback, on ports of its own.
func options(t testing.TB, id *identity.Identity) embedded.Options {
	t.Helper()
	return embedded.Options{
		Dir:        filepath.Join(t.TempDir(), "store"),
		Name:       id.Name(),
		ClientAddr: fmt.Sprintf("127.0.0.1:%d", storetest.FreePort(t)),
		PeerAddr:   fmt.Sprintf("127.0.0.1:%d", storetest.FreePort(t)),
		Identity:   id,
	}
}

func tlsServer(t testing.TB, id *identity.Identity) embedded.Options {
	t.Helper()
	opts := options(t, id)
	s := start(t, opts)
	t.Cleanup(func() { _ = s.Close() })
	return opts
}

// open connects a client with tc (nil: plaintext) and says whether a write went through.
func open(t *testing.T, addr string, tc *tls.Config) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := etcdstore.Open(ctx, etcdstore.Options{Endpoints: []string{addr}, TLS: tc, DialTimeout: 2 * time.Second})
	if err != nil {
		return err
	}
	defer s.Close()
	_, err = s.Txn(ctx, nil, []cluster.Op{cluster.Put("drayage/x", []byte("y"))})
	return err
}

func TestTheEmbeddedStoreAdmitsOnlyTheClustersNodes(t *testing.T) {
	ids, dir := identities(t, "test", "node-a", "node-b")
	others, _ := identities(t, "other", "node-b")
	opts := tlsServer(t, ids["node-a"])

	require.NoError(t, open(t, opts.ClientAddr, ids["node-b"].ClientConfig("node-a")), "a node of the cluster, with its certificate")
	require.Error(t, open(t, opts.ClientAddr, others["node-b"].ClientConfig("node-a")), "a node of another cluster")
	require.Error(t, open(t, opts.ClientAddr, nil), "plaintext")
	noCert := ids["node-b"].ClientConfig("node-a")
	noCert.GetClientCertificate = nil
	require.Error(t, open(t, opts.ClientAddr, noCert), "no client certificate")

	// etcd:// from another node with the TLS dir's files, as the README says.
	s, err := backends.Open(context.Background(), backends.Config{URL: "etcd://" + opts.ClientAddr,
		CAFile: filepath.Join(dir, "node-b", identity.CAFile), CertFile: filepath.Join(dir, "node-b", identity.NodeCertFile),
		KeyFile: filepath.Join(dir, "node-b", identity.NodeKeyFile)})
	require.NoError(t, err)
	require.NoError(t, s.Close())

	// The peer port speaks TLS too, and wants a certificate.
	c, err := tls.Dial("tcp", opts.PeerAddr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // only the refusal matters
	if err == nil {
		_, err = c.Write([]byte("GET /members HTTP/1.1\r\nHost: x\r\n\r\n"))
		if err == nil {
			_, err = c.Read(make([]byte, 1))
		}
		c.Close()
	}
	require.Error(t, err, "the peer port refuses a client without a certificate")
	raw, err := net.DialTimeout("tcp", opts.PeerAddr, time.Second)
	require.NoError(t, err)
	_, _ = raw.Write([]byte("GET /members HTTP/1.1\r\nHost: x\r\n\r\n"))
	_ = raw.SetReadDeadline(time.Now().Add(2 * time.Second))
	b := make([]byte, 64)
	n, _ := raw.Read(b)
	raw.Close()
	assert.NotContains(t, string(b[:n]), "HTTP/1.1 200", "no plaintext answer on the peer port")
}

func TestAnEmbeddedStoreWithoutIdentityListensOnLoopbackOnly(t *testing.T) {
	_, err := embedded.Start(context.Background(), embedded.Options{
		Dir: filepath.Join(t.TempDir(), "store"), Name: "node-a",
		ClientAddr: fmt.Sprintf("0.0.0.0:%d", storetest.FreePort(t)),
	})
	require.Error(t, err)
	assert.True(t, errors.Is(err, embedded.ErrPlaintext))
	assert.Contains(t, err.Error(), "make the cluster's certificates with 'drayage tls init', or keep DRAYAGE_EMBEDDED_ADDR on 127.0.0.1")
}
