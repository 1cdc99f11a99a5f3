package storetest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Server is a real store server started for a test, on loopback (or ServerOptions.Host).
type Server struct {
	// Addr is the client address, host:port.
	Addr string
	// URL is the --store URL for it.
	URL string

	name  string
	args  []string
	bin   string
	dir   string
	ready func() bool
	cmd   *exec.Cmd
}

// FreePort returns a TCP port nobody listens on right now, below Linux's ephemeral range
// (32768 and up): a port the kernel handed out for ":0" is soon handed to an outgoing
// connection too, which then holds it when the test's server binds it. It is free on
// every address, so that a server may bind it on any.
func FreePort(t testing.TB) int {
	for range 1000 {
		p := 20000 + int(portSeq.Add(1)+portBase)%12000
		l, err := net.Listen("tcp", ":"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		l.Close()
		return p
	}
	t.Fatal("no free TCP port in 20000-31999")
	return 0
}

// portSeq and portBase spread the ports test processes pick: each process starts at a
// place of its own.
var (
	portSeq  atomic.Int64
	portBase = int64(os.Getpid()*7919) % 12000
)

// ServerOptions configure a test server.
type ServerOptions struct {
	// TLS, if set, makes the server serve clients over TLS and require client
	// certificates signed by its CA.
	TLS *TLSFiles
	// ACLToken, for Consul, enables ACLs (default deny) with this management token.
	ACLToken string
	// Host is the address clients reach the server at (default 127.0.0.1), e.g. a test
	// bridge's address that nodes in network namespaces can reach. Peer and raft traffic
	// stay on loopback.
	Host string
}

func (o ServerOptions) host() string {
	if o.Host == "" {
		return "127.0.0.1"
	}
	return o.Host
}

// StartEtcd starts a single-member etcd server (Debian's etcd-server) in a temp dir; it
// stops when the test ends.
func StartEtcd(t testing.TB, opts ServerOptions) *Server {
	bin := FindBinary(t, "etcd", "DRAYAGE_ETCD", "install Debian's etcd-server (make test does)")
	dir := t.TempDir()
	client, peer := FreePort(t), FreePort(t)
	scheme := "http"
	if opts.TLS != nil {
		scheme = "https"
	}
	addr := net.JoinHostPort(opts.host(), strconv.Itoa(client))
	clientURL := fmt.Sprintf("%s://%s", scheme, addr)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peer)
	s := &Server{
		Addr: addr,
		name: "etcd", bin: bin, dir: dir,
		args: []string{
			"--name", "storetest", "--data-dir", filepath.Join(dir, "data"),
			"--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
			"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
			"--initial-cluster", "storetest=" + peerURL,
		},
	}
	s.URL = "etcd://" + s.Addr
	probe := plainProbe
	if opts.TLS != nil {
		s.args = append(s.args, "--cert-file", opts.TLS.ServerCert, "--key-file", opts.TLS.ServerKey,
			"--trusted-ca-file", opts.TLS.CA, "--client-cert-auth")
		probe = tlsProbe(opts.TLS.ClientConfig(t))
	}
	s.ready = func() bool { return httpOK(probe, clientURL+"/health") }
	s.start(t)
	return s
}

// StartConsul starts a single Consul server (not dev mode: its data survives a restart)
// from the binary scripts/build-tools.sh builds; it stops when the test ends.
func StartConsul(t testing.TB, opts ServerOptions) *Server {
	bin := FindBinary(t, "consul", "DRAYAGE_CONSUL", "build it with scripts/build-tools.sh consul (make test does)")
	dir := t.TempDir()
	http, serf, server := FreePort(t), FreePort(t), FreePort(t)
	s := &Server{
		Addr: net.JoinHostPort(opts.host(), strconv.Itoa(http)),
		name: "consul", bin: bin, dir: dir,
		args: []string{
			"agent", "-server", "-bootstrap-expect=1", "-data-dir=" + filepath.Join(dir, "data"),
			"-node=storetest", "-bind=127.0.0.1", "-client=" + opts.host(), "-advertise=127.0.0.1",
			"-http-port=" + strconv.Itoa(http), "-serf-lan-port=" + strconv.Itoa(serf),
			"-server-port=" + strconv.Itoa(server), "-serf-wan-port=-1", "-dns-port=-1",
			"-grpc-port=-1", "-grpc-tls-port=-1", "-log-level=warn",
			// No update check (it calls out to the internet), and quick elections.
			"-hcl=disable_update_check = true", "-hcl=performance { raft_multiplier = 1 }",
		},
	}
	s.URL = "consul://" + s.Addr
	probe, scheme := plainProbe, "http"
	if opts.TLS != nil {
		// HTTPS on the same port instead of HTTP, client certificates required.
		s.args = append(s.args, "-http-port=-1", "-https-port="+strconv.Itoa(http), fmt.Sprintf(
			"-hcl=tls { defaults { ca_file = %q cert_file = %q key_file = %q verify_incoming = true } }",
			opts.TLS.CA, opts.TLS.ServerCert, opts.TLS.ServerKey))
		probe, scheme = tlsProbe(opts.TLS.ClientConfig(t)), "https"
	}
	if opts.ACLToken != "" {
		s.args = append(s.args, fmt.Sprintf(
			`-hcl=acl { enabled = true default_policy = "deny" tokens { initial_management = %q agent = %q } }`,
			opts.ACLToken, opts.ACLToken))
	}
	s.ready = func() bool { return httpLeader(probe, scheme+"://"+s.Addr+"/v1/status/leader") }
	s.start(t)
	return s
}

func (s *Server) start(t testing.TB) {
	t.Helper()
	logFile, err := os.OpenFile(filepath.Join(s.dir, s.name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	require.NoError(t, err)
	s.cmd = exec.Command(s.bin, s.args...)
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	require.NoError(t, s.cmd.Start())
	t.Cleanup(func() { s.stop(); _ = logFile.Close() })
	deadline := time.Now().Add(60 * time.Second)
	for !s.ready() {
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logFile.Name())
			t.Fatalf("%s on %s not ready after 60s; its log:\n%s", s.name, s.Addr, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *Server) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
	s.cmd = nil
}

// SnapshotEtcd saves a snapshot of an etcd server's data to a file in the test's temp
// dir and returns its path (etcdctl snapshot save).
func (s *Server) SnapshotEtcd(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "snapshot.db")
	out, err := exec.Command(etcdctl(t), "--endpoints="+s.Addr, "snapshot", "save", path).CombinedOutput()
	require.NoError(t, err, "etcdctl snapshot save: %s", out)
	return path
}

// RestoreEtcd stops an etcd server, restores snapshot into a new data dir (etcdctl
// snapshot restore), and starts the server again over it, at the same addresses: what an
// operator does to roll the store back.
func (s *Server) RestoreEtcd(t testing.TB, snapshot string) {
	t.Helper()
	s.stop()
	dataDir := filepath.Join(s.dir, fmt.Sprintf("restored-%d", time.Now().UnixNano()))
	var name, peerURL, cluster string
	for i := 0; i+1 < len(s.args); i++ {
		switch s.args[i] {
		case "--name":
			name = s.args[i+1]
		case "--initial-advertise-peer-urls":
			peerURL = s.args[i+1]
		case "--initial-cluster":
			cluster = s.args[i+1]
		case "--data-dir":
			s.args[i+1] = dataDir
		}
	}
	out, err := exec.Command(etcdctl(t), "snapshot", "restore", snapshot, "--data-dir", dataDir, "--name", name,
		"--initial-cluster", cluster, "--initial-advertise-peer-urls", peerURL).CombinedOutput()
	require.NoError(t, err, "etcdctl snapshot restore: %s", out)
	s.start(t)
}

func etcdctl(t testing.TB) string {
	return FindBinary(t, "etcdctl", "DRAYAGE_ETCDCTL", "install Debian's etcd-client (make test does)")
}

// Crash kills the server (SIGKILL) and starts it again over the same data.
func (s *Server) Crash(t testing.TB) {
	t.Helper()
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
		s.cmd = nil
	}
	s.start(t)
}

// Restart stops the server and starts it again over the same data.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.stop()
	s.start(t)
}

// FindBinary finds a server binary: $ENV, then PATH, then .tools/bin in the repo. A test
// that needs a server fails, never skips, when it is missing.
func FindBinary(t testing.TB, name, env, hint string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		return p
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if dir, err := os.Getwd(); err == nil {
		for ; dir != filepath.Dir(dir); dir = filepath.Dir(dir) {
			p := filepath.Join(dir, ".tools", "bin", name)
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
	}
	t.Fatalf("no %s binary: %s, or set %s", name, hint, env)
	return ""
}

// Dir is where the server keeps its data.
func (s *Server) Dir() string { return s.dir }
