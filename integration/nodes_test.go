package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/cluster/storetest"
)

// The multi-node harness: every node is a throwaway engine (scripts/engine.sh --addr) in a
// network namespace of its own on the test bridge, with the managed plugin drayage:dev
// enabled in it, the way users run drayage. The store runs on the host at the bridge's
// address.

const (
	// bridgeHost is the host's address on the test bridge (scripts/engine.sh).
	bridgeHost = "10.213.0.1"
	// nodePlugin is the plugin's name in every node's engine.
	nodePlugin = "drayage:dev"
)

// node is one node of a test cluster.
type node struct {
	t      testing.TB
	name   string
	addr   string // on the test bridge
	engine *engine
	state  string // host dir: the plugin's state mount (control.sock is here)
	tls    string // host dir: the plugin's tls mount
	env    []string
}

// storeKind picks the cluster store a test cluster runs on.
type storeKind string

const (
	etcdStore   storeKind = "etcd"
	consulStore storeKind = "consul"
	// embeddedStore: no store server; the nodes form the embedded store's cluster.
	embeddedStore storeKind = "embedded"
)

// startNodes starts a cluster of nodes with these names on a fresh store of the given
// kind; env holds more plugin settings (KEY=VALUE) for every node. All is torn down when
// the test ends.
func startNodes(t testing.TB, kind storeKind, names []string, env ...string) []*node {
	t.Helper()
	nodes, _ := startNodesWith(t, kind, names, nil, env...)
	return nodes
}

// startNodesWith is startNodes with prepare, if set, called on each node before its
// engine starts (to mount a filesystem on its state dir, say; n.engine is not set yet). It returns the store
// server too (nil for the embedded store).
func startNodesWith(t testing.TB, kind storeKind, names []string, prepare func(n *node), env ...string) ([]*node, *storetest.Server) {
	t.Helper()
	nodes, server := prepareNodes(t, kind, names, prepare, env...)
	for _, n := range nodes {
		n.installPlugin()
	}
	meshedNodes(t, nodes)
	return nodes, server
}

// prepareNodes starts the nodes' engines, the store, and their certificates, and sets
// their plugin settings (n.env), but installs no plugin.
func prepareNodes(t testing.TB, kind storeKind, names []string, prepare func(n *node), env ...string) ([]*node, *storetest.Server) {
	t.Helper()
	base, err := os.MkdirTemp("", "drn-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(base) })
	nodes := make([]*node, len(names))
	ips := make([]string, len(names))
	for i, name := range names {
		n := &node{t: t, name: name, state: filepath.Join(base, name, "state"), tls: filepath.Join(base, "pki", name)}
		require.NoError(t, os.MkdirAll(n.state, 0o700))
		if prepare != nil {
			prepare(n) // before the engine starts: its mount namespace is a copy of the host's
		}
		n.engine, n.addr = startNetEngine(t)
		nodes[i], ips[i] = n, name+"="+n.addr
	}
	// The bridge exists now: the store can listen on it.
	storeURL := "embedded"
	var server *storetest.Server
	switch kind {
	case consulStore:
		server = storetest.StartConsul(t, storetest.ServerOptions{Host: bridgeHost})
	case etcdStore:
		server = storetest.StartEtcd(t, storetest.ServerOptions{Host: bridgeHost})
	}
	if server != nil {
		storeURL = server.URL
	}
	// Cleanups run last-in first-out: stop the nodes while the store still answers, or
	// each daemon waits on it as it shuts down.
	t.Cleanup(func() {
		for _, n := range nodes {
			_, _ = tryRun(n.engine.script(), "stop", n.engine.dir)
		}
	})
	run(t, binary, "tls", "init", "--dir", filepath.Join(base, "pki"), "--nodes", strings.Join(names, ","), "--ip", strings.Join(ips, ","))
	for _, n := range nodes {
		n.env = append([]string{
			"DRAYAGE_NAME=" + n.name, "DRAYAGE_STORE=" + storeURL, "DRAYAGE_JOIN=" + nodes[0].addr,
			"DRAYAGE_LOG_LEVEL=debug", "DRAYAGE_LEASE_TTL=5s",
		}, env...)
	}
	return nodes, server
}

// meshedNodes waits until every node reaches every other over mutual TLS.
func meshedNodes(t testing.TB, nodes []*node) {
	t.Helper()
	eventually(t, timeout, "every node to see every other", func() bool {
		for _, n := range nodes {
			seen := nodeList(t, n.state)
			for _, m := range nodes {
				if m != n && seen[m.name].Reach != "ok" {
					return false
				}
			}
		}
		return true
	})
}

// startNetEngine starts an engine on the next free address of the test bridge.
func startNetEngine(t testing.TB) (*engine, string) {
	t.Helper()
	for i := 2; i <= 250; i++ {
		if _, err := os.Stat(fmt.Sprintf("/run/netns/drayage-%d", i)); err == nil {
			continue
		}
		return startEngine(t, "--addr", strconv.Itoa(i)), fmt.Sprintf("10.213.0.%d", i)
	}
	t.Fatal("no free address on the test bridge (10.213.0.2-250): remove stale namespaces with 'ip netns del drayage-N'")
	return nil, ""
}

// installPlugin creates the managed plugin in the node's engine from build/plugin (made by
// TestMain), points its mounts at the node's dirs, sets it up and enables it.
func (n *node) installPlugin() {
	n.t.Helper()
	n.docker("plugin", "create", nodePlugin, filepath.Join(repoRoot, "build", "plugin"))
	n.docker(append([]string{"plugin", "set", nodePlugin, "state.source=" + n.state, "tls.source=" + n.tls}, n.env...)...)
	n.docker("plugin", "enable", nodePlugin)
	eventually(n.t, timeout, "node "+n.name+"'s daemon to answer", func() bool {
		_, err := tryRun(binary, "--root", n.state, "volume", "ls")
		return err == nil
	})
}

// docker runs the docker CLI against the node's engine.
func (n *node) docker(args ...string) string {
	n.t.Helper()
	return n.engine.docker(n.t, args...)
}

// run runs a one-off container of the test image on the node (no network) and returns
// its output.
func (n *node) run(args ...string) string {
	n.t.Helper()
	return n.docker(append([]string{"run", "--rm", "--network", "none"}, args...)...)
}

// runFails runs a one-off container that must fail to start and returns the output.
func (n *node) runFails(args ...string) string {
	n.t.Helper()
	return mustFail(n.t, "docker", append([]string{"-H", n.engine.host, "run", "--rm", "--network", "none"}, args...)...)
}

// drayage runs the drayage CLI against the node's daemon.
func (n *node) drayage(args ...string) string {
	n.t.Helper()
	return run(n.t, binary, append([]string{"--root", n.state}, args...)...)
}

// drayageFails runs the drayage CLI, which must fail, and returns its output.
func (n *node) drayageFails(args ...string) string {
	n.t.Helper()
	return mustFail(n.t, binary, append([]string{"--root", n.state}, args...)...)
}

// log is what the node's engine and plugin logged (the engine logs the plugin's output).
func (n *node) log() string {
	b, _ := os.ReadFile(filepath.Join(n.engine.dir, "dockerd.log"))
	return string(b)
}

// crash kills every process of the node at once (engine, containerd, the plugin), as a
// power cut would; restart brings it back over the same state.
func (n *node) crash() {
	n.t.Helper()
	run(n.t, n.engine.script(), "crash", n.engine.dir)
}

func (n *node) restart() {
	n.t.Helper()
	run(n.t, n.engine.script(), "restart", n.engine.dir)
	eventually(n.t, timeout, "node "+n.name+"'s daemon to answer again", func() bool {
		_, err := tryRun(binary, "--root", n.state, "volume", "ls")
		return err == nil
	})
}

// cut drops all the node's network traffic; heal lets it through again.
func (n *node) cut()  { n.t.Helper(); run(n.t, n.engine.script(), "cut", n.engine.dir) }
func (n *node) heal() { n.t.Helper(); run(n.t, n.engine.script(), "heal", n.engine.dir) }

// killPlugin kills the node's plugin process with SIGKILL and waits for the engine to
// restart it (it does, for an enabled plugin).
func (n *node) killPlugin() {
	n.t.Helper()
	pid := n.pluginPID()
	require.NotZero(n.t, pid, "node %s's plugin process not found", n.name)
	require.NoError(n.t, syscall.Kill(pid, syscall.SIGKILL))
	eventually(n.t, timeout, "the engine to restart node "+n.name+"'s plugin", func() bool {
		if p := n.pluginPID(); p == 0 || p == pid {
			return false
		}
		_, err := tryRun(binary, "--root", n.state, "volume", "ls")
		return err == nil
	})
}

// pluginPID finds the node's 'drayage daemon' process by the DRAYAGE_NAME it was given
// (0: none runs).
func (n *node) pluginPID() int { return daemonPID(n.name) }

// daemonPID returns the PID of the drayage daemon of the named node (its DRAYAGE_NAME),
// or 0 if none runs.
func daemonPID(name string) int {
	procs, _ := filepath.Glob("/proc/[0-9]*/environ")
	for _, p := range procs {
		env, err := os.ReadFile(p)
		if err != nil || !slices.Contains(strings.Split(string(env), "\x00"), "DRAYAGE_NAME="+name) {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join(filepath.Dir(p), "cmdline"))
		if strings.HasPrefix(string(cmdline), "/drayage\x00daemon") {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			return pid
		}
	}
	return 0
}

// dirBytes is the size of the files under dir (0 if there is none).
func dirBytes(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}
