package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/cluster/storetest"
	"github.com/drayage/drayage/daemon/metrics/metricstest"
)

// A host cluster is daemons on the host (no engines) on one real etcd, with mutual TLS
// between them and a metrics endpoint each: what the data-safety tests drive through the
// plugin API on each daemon's socket, the CLI, etcdctl and signals.
type hostNode struct {
	*netNode
	metricsAddr string
}

// startHostCluster starts the named nodes on the store at storeURL; a node listed in
// failpoints runs the failpoints build (failpointsBinary).
func startHostCluster(t testing.TB, storeURL string, names []string, failpoints ...string) []*hostNode {
	t.Helper()
	base := t.TempDir()
	pki := filepath.Join(base, "pki")
	ips := make([]string, len(names))
	for i, n := range names {
		ips[i] = n + "=127.0.0.1"
	}
	run(t, binary, "tls", "init", "--dir", pki, "--nodes", strings.Join(names, ","), "--ip", strings.Join(ips, ","))
	var nodes []*hostNode
	for i, name := range names {
		join := 0
		if i > 0 {
			join = nodes[0].gossip
		}
		m := fmt.Sprintf("127.0.0.1:%d", storetest.FreePort(t))
		n := startNetNode(t, name, base, filepath.Join(pki, name), storeURL, join, "safety", "--metrics-addr", m)
		for _, f := range failpoints {
			if f == name {
				n.bin = failpointsBinary(t)
				n.kill(syscall.SIGTERM)
				n.start()
			}
		}
		nodes = append(nodes, &hostNode{netNode: n, metricsAddr: m})
	}
	meshed(t, nodes)
	return nodes
}

// meshed waits until every node sees every other alive and reaches it over mutual TLS.
func meshed(t testing.TB, nodes []*hostNode) {
	t.Helper()
	for _, n := range nodes {
		eventually(t, timeout, n.name+" to see every node alive", func() bool {
			seen := nodeList(t, n.root)
			for _, m := range nodes {
				if seen[m.name].State != "alive" || (m != n && seen[m.name].Reach != "ok") {
					return false
				}
			}
			return true
		})
	}
}

// driver calls the Docker volume plugin API on the node's socket, as an engine does, and
// returns the reply.
func (n *hostNode) driver(t testing.TB, method string, req any) map[string]any {
	t.Helper()
	c := http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", n.socket)
	}}}
	body, err := json.Marshal(req)
	require.NoError(t, err)
	resp, err := c.Post("http://plugin/VolumeDriver."+method, "application/vnd.docker.plugins.v1+json", bytes.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	var out map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	return out
}

// must calls the plugin API and fails the test on an Err reply.
func (n *hostNode) must(t testing.TB, method string, req any) map[string]any {
	t.Helper()
	out := n.driver(t, method, req)
	require.Empty(t, out["Err"], "%s on %s", method, n.name)
	return out
}

// create makes a volume with one file, table, holding content.
func (n *hostNode) create(t testing.TB, name, content string, opts map[string]string) {
	t.Helper()
	n.must(t, "Create", map[string]any{"Name": name, "Opts": opts})
	require.NoError(t, os.WriteFile(filepath.Join(n.data(name), "table"), []byte(content), 0o644))
}

// data is where the node keeps the volume's files.
func (n *hostNode) data(name string) string { return filepath.Join(n.root, "volumes", name, "data") }

func (n *hostNode) drayage(t testing.TB, args ...string) string {
	t.Helper()
	return run(t, binary, append([]string{"--root", n.root}, args...)...)
}

func (n *hostNode) drayageFails(t *testing.T, args ...string) string {
	t.Helper()
	return mustFail(t, binary, append([]string{"--root", n.root}, args...)...)
}

// refused reads drayage_records_refused_total{reason} from the node's metrics.
func (n *hostNode) refused(t *testing.T, reason string) float64 {
	t.Helper()
	return metricstest.Get(t, "http://"+n.metricsAddr+"/metrics").Value("drayage_records_refused_total", "reason", reason)
}

var (
	failpointsOnce sync.Once
	failpointsBin  string
	failpointsErr  error
)

// failpointsBinary builds drayage with -tags failpoints (once): a daemon that stops for
// good at a named point of a move (DRAYAGE_FAILPOINTS), to be killed there.
func failpointsBinary(t testing.TB) string {
	t.Helper()
	failpointsOnce.Do(func() {
		failpointsBin = filepath.Join(repoRoot, "build", "drayage-failpoints")
		cmd := exec.Command("go", "build", "-tags", "failpoints", "-o", failpointsBin, "./cmd/drayage")
		cmd.Dir = repoRoot
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			failpointsErr = fmt.Errorf("build the failpoints binary: %w\n%s", err, out)
		}
	})
	require.NoError(t, failpointsErr)
	return failpointsBin
}

// etcdRecord reads a volume's record from etcd, as JSON fields.
func etcdRecord(t *testing.T, addr, name string) map[string]any {
	t.Helper()
	out := run(t, "etcdctl", "--endpoints="+addr, "get", "--print-value-only", "drayage/volumes/"+name)
	var rec map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &rec), "record of %s: %q", name, out)
	return rec
}

// etcdForge rewrites a volume's record in etcd directly, as anyone who reaches the store
// could.
func etcdForge(t *testing.T, addr, name string, change func(map[string]any)) {
	t.Helper()
	rec := etcdRecord(t, addr, name)
	change(rec)
	b, err := json.Marshal(rec)
	require.NoError(t, err)
	run(t, "etcdctl", "--endpoints="+addr, "put", "drayage/volumes/"+name, string(b))
}
