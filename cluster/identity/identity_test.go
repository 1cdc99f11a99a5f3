package identity

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// cluster is a CA with nodes' TLS dirs under one temp dir.
type testCluster struct {
	t   *testing.T
	dir string
	ca  *CA
	key []byte
}

func newTestCluster(t *testing.T) *testCluster {
	ca, err := NewCA("test")
	require.NoError(t, err)
	key, err := NewGossipKey()
	require.NoError(t, err)
	return &testCluster{t: t, dir: t.TempDir(), ca: ca, key: key}
}

func (c *testCluster) node(name string, spec NodeSpec) *Identity {
	c.t.Helper()
	spec.Name = name
	dir := filepath.Join(c.dir, name)
	require.NoError(c.t, c.ca.WriteNode(dir, spec, c.key))
	id, err := Load(dir, name)
	require.NoError(c.t, err)
	return id
}

// server accepts connections as node id until the test ends, logging into a buffer.
type server struct {
	addr string
	mu   sync.Mutex
	logs bytes.Buffer
	acc  chan *tls.Conn
}

func serve(t *testing.T, id *Identity, known ...string) *server {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	s := &server{addr: l.Addr().String(), acc: make(chan *tls.Conn, 4)}
	log := slog.New(slog.NewTextHandler(lockedWriter{s}, nil))
	cfg := id.ServerConfig(func(n string) bool {
		for _, k := range known {
			if k == n {
				return true
			}
		}
		return false
	})
	go func() {
		for {
			raw, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				if conn, err := id.ServerHandshake(raw, cfg, 5*time.Second, log); err == nil {
					s.acc <- conn
				}
			}()
		}
	}()
	return s
}

type lockedWriter struct{ s *server }

func (w lockedWriter) Write(p []byte) (int, error) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	return w.s.logs.Write(p)
}

func (s *server) waitLog(t *testing.T, want string) {
	t.Helper()
	require.Eventually(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return bytes.Contains(s.logs.Bytes(), []byte(want))
	}, 5*time.Second, 20*time.Millisecond, "server log should say %q; it says:\n%s", want, s.logsString())
}

func (s *server) logsString() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logs.String()
}

func dial(addr string, cfg *tls.Config) (*tls.Conn, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	// TLS 1.3 clients finish before the server has checked their certificate; a read
	// surfaces the server's verdict.
	_ = conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := conn.Read(make([]byte, 1)); err != nil && !os.IsTimeout(err) {
		conn.Close()
		return nil, err
	}
	_ = conn.SetReadDeadline(time.Time{})
	return conn, nil
}

func TestNodesWithClusterCertificatesConnect(t *testing.T) {
	c := newTestCluster(t)
	a, b := c.node("node-a", NodeSpec{}), c.node("node-b", NodeSpec{})
	s := serve(t, a, "node-b")
	conn, err := dial(s.addr, b.ClientConfig("node-a"))
	require.NoError(t, err)
	defer conn.Close()
	assert.Equal(t, "node-a", PeerName(conn.ConnectionState()))
	assert.Equal(t, uint16(tls.VersionTLS13), conn.ConnectionState().Version)
	srv := <-s.acc
	assert.Equal(t, "node-b", PeerName(srv.ConnectionState()), "the server knows the client by its certificate")
}

func TestHandshakesThatMustFailSayWhy(t *testing.T) {
	c := newTestCluster(t)
	a, b := c.node("node-a", NodeSpec{}), c.node("node-b", NodeSpec{})
	s := serve(t, a, "node-b", "node-c")
	other := newTestCluster(t)
	foreign := other.node("node-b", NodeSpec{})
	// Load refuses an expired certificate, so this client is put together by hand.
	require.NoError(t, c.ca.WriteNode(filepath.Join(c.dir, "node-c"),
		NodeSpec{Name: "node-c", NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)}, c.key))
	expiredPair, err := tls.LoadX509KeyPair(filepath.Join(c.dir, "node-c", NodeCertFile), filepath.Join(c.dir, "node-c", NodeKeyFile))
	require.NoError(t, err)
	expired := b.ClientConfig("node-a")
	expired.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &expiredPair, nil }
	stranger := c.node("node-z", NodeSpec{})

	// A client of another cluster that does not care whom it reaches.
	foreignCfg := foreign.ClientConfig("node-a")
	foreignCfg.VerifyConnection = nil
	noCert := b.ClientConfig("node-a")
	noCert.GetClientCertificate = nil
	tls12 := b.ClientConfig("node-a")
	tls12.MinVersion, tls12.MaxVersion = tls.VersionTLS12, tls.VersionTLS12

	for _, tc := range []struct {
		name string
		cfg  *tls.Config
		log  string
	}{
		{"no client certificate", noCert, "no certificate presented"},
		{"certificate from another CA", foreignCfg, "certificate not signed by this cluster's CA"},
		{"expired certificate", expired, "certificate expired or not yet valid"},
		{"valid certificate of a node that is not a member", stranger.ClientConfig("node-a"), `certificate names a node that is not a member: \"node-z\"`},
		{"TLS 1.2", tls12, "TLS version below 1.3 offered"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := dial(s.addr, tc.cfg)
			if err == nil {
				conn.Close()
			}
			require.Error(t, err, "the handshake must fail")
			s.waitLog(t, tc.log)
		})
	}

	t.Run("plaintext", func(t *testing.T) {
		raw, err := net.Dial("tcp", s.addr)
		require.NoError(t, err)
		defer raw.Close()
		_, _ = raw.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		_, _ = io.ReadAll(raw)
		s.waitLog(t, "not TLS (plaintext?)")
	})

	t.Run("server presenting another node's valid certificate", func(t *testing.T) {
		// node-b dials what it believes is node-c but reaches node-a.
		_, err := dial(s.addr, b.ClientConfig("node-c"))
		require.ErrorIs(t, err, ErrWrongNode)
		assert.Contains(t, err.Error(), `dialled node "node-c", reached "node-a"`)
	})
	assert.Len(t, s.acc, 0, "no rejected connection reached the server")
}

func TestRotatedCertificateServesNewConnectionsWhileOldOnesFinish(t *testing.T) {
	c := newTestCluster(t)
	a, b := c.node("node-a", NodeSpec{}), c.node("node-b", NodeSpec{})
	s := serve(t, a, "node-b")
	before := a.Certificate().SerialNumber

	// A stream runs.
	conn, err := dial(s.addr, b.ClientConfig("node-a"))
	require.NoError(t, err)
	srv := <-s.acc
	received := make(chan int64)
	go func() {
		n, _ := io.Copy(io.Discard, srv)
		received <- n
	}()
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	for range 100 {
		_, err := conn.Write(chunk)
		require.NoError(t, err)
	}

	// node-a's certificate is replaced on disk and reloaded mid-stream.
	cert, key, err := c.ca.Issue(NodeSpec{Name: "node-a"})
	require.NoError(t, err)
	dir := filepath.Join(c.dir, "node-a")
	require.NoError(t, os.WriteFile(filepath.Join(dir, NodeKeyFile), key, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, NodeCertFile), cert, 0o600))
	require.NoError(t, a.Reload())
	after := a.Certificate().SerialNumber
	require.NotEqual(t, before, after)

	for range 100 {
		_, err := conn.Write(chunk)
		require.NoError(t, err, "the stream keeps going")
	}
	require.NoError(t, conn.Close())
	assert.Equal(t, int64(200*len(chunk)), <-received, "and completes")

	conn2, err := dial(s.addr, b.ClientConfig("node-a"))
	require.NoError(t, err)
	defer conn2.Close()
	assert.Equal(t, after, conn2.ConnectionState().PeerCertificates[0].SerialNumber, "new connections get the new certificate")
}

func TestReloadRefusesACertificateForAnotherNodeOrCA(t *testing.T) {
	c := newTestCluster(t)
	a := c.node("node-a", NodeSpec{})
	dir := filepath.Join(c.dir, "node-a")
	serial := a.Certificate().SerialNumber

	cert, key, err := c.ca.Issue(NodeSpec{Name: "node-b"})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, NodeKeyFile), key, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, NodeCertFile), cert, 0o600))
	err = a.Reload()
	require.Error(t, err)
	assert.Contains(t, err.Error(), `is for node "node-b"`)

	other, err := NewCA("other")
	require.NoError(t, err)
	cert, key, err = other.Issue(NodeSpec{Name: "node-a"})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, NodeKeyFile), key, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, NodeCertFile), cert, 0o600))
	require.ErrorIs(t, a.Reload(), ErrUnknownCA)
	assert.Equal(t, serial, a.Certificate().SerialNumber, "the good certificate stays in use")
}

func TestTLSInitFilesArePrivateAndNeverOverwritten(t *testing.T) {
	c := newTestCluster(t)
	require.NoError(t, c.ca.Save(filepath.Join(c.dir, "ca")))
	require.ErrorIs(t, c.ca.Save(filepath.Join(c.dir, "ca")), ErrExists)
	id := c.node("node-a", NodeSpec{DNS: []string{"a.example"}, IPs: []net.IP{net.ParseIP("10.0.0.1")}})
	require.ErrorIs(t, c.ca.WriteNode(filepath.Join(c.dir, "node-a"), NodeSpec{Name: "node-a"}, c.key), ErrExists)

	for _, f := range []string{CAFile, NodeCertFile, NodeKeyFile, GossipKeyFile} {
		st, err := os.Stat(filepath.Join(c.dir, "node-a", f))
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o600), st.Mode().Perm(), f)
	}
	cert := id.Certificate()
	assert.Equal(t, []string{"node-a", "a.example"}, cert.DNSNames)
	assert.True(t, cert.IPAddresses[0].Equal(net.ParseIP("10.0.0.1")))
	assert.ElementsMatch(t, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, cert.ExtKeyUsage)
	assert.Equal(t, c.key, id.GossipKey())

	loaded, err := LoadCA(filepath.Join(c.dir, "ca"))
	require.NoError(t, err)
	assert.Equal(t, c.ca.Cert.SerialNumber, loaded.Cert.SerialNumber)
}

func TestExpiryIsWarnedAboutAMonthAhead(t *testing.T) {
	c := newTestCluster(t)
	id := c.node("node-a", NodeSpec{NotAfter: time.Now().Add(10 * 24 * time.Hour)})
	assert.Contains(t, id.ExpiryWarning(time.Now()), `certificate of "node-a" expires in 9 days`)
	assert.Contains(t, id.ExpiryWarning(time.Now()), "drayage tls add-node node-a --force")
	assert.Empty(t, c.node("node-b", NodeSpec{}).ExpiryWarning(time.Now()))
	assert.Contains(t, id.ExpiryWarning(time.Now().Add(11*24*time.Hour)), "expired on")
}

func TestLoadRefusesAnExpiredCertificateSayingHowToRenew(t *testing.T) {
	c := newTestCluster(t)
	require.NoError(t, c.ca.WriteNode(filepath.Join(c.dir, "node-a"),
		NodeSpec{Name: "node-a", NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)}, c.key))
	_, err := Load(filepath.Join(c.dir, "node-a"), "node-a")
	require.ErrorIs(t, err, ErrExpired)
	assert.Contains(t, err.Error(), "drayage tls add-node node-a --force")
}

func TestLoadRefusesTheFilesOfAnotherNode(t *testing.T) {
	c := newTestCluster(t)
	c.node("node-a", NodeSpec{})
	_, err := Load(filepath.Join(c.dir, "node-a"), "node-b")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `is for node "node-a"`)
	_, err = Load(filepath.Join(c.dir, "missing"), "node-b")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "drayage tls init")
}
