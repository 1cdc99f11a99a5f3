package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// docs/nomad-job.nomad.hcl on a real Nomad: a dev agent (server and client) drives node-a's
// engine, a second client node-b's. The job moves from node-a to node-b by a constraint
// change, and its volume comes along.
func TestNomadJobMovesWithItsVolume(t *testing.T) {
	bin := os.Getenv("DRAYAGE_NOMAD")
	if bin == "" {
		bin = filepath.Join(repoRoot, ".tools", "bin", "nomad")
	}
	_, err := os.Stat(bin)
	require.NoError(t, err, "no Nomad agent: build it with scripts/build-tools.sh nomad (make test does), or set DRAYAGE_NOMAD")

	nodes := startNodes(t, etcdStore, []string{"node-a", "node-b"})
	a, b := nodes[0], nodes[1]
	http, rpc, serf := freePortOf(), freePortOf(), freePortOf()
	t.Setenv("NOMAD_ADDR", "http://127.0.0.1:"+http) // for every nomad command below
	startNomad(t, bin, a, "ports {\n http = "+http+"\n rpc = "+rpc+"\n serf = "+serf+"\n}",
		"-dev", "-bind", "127.0.0.1", "-network-interface", "lo")
	eventually(t, timeout, "the Nomad dev agent to answer", func() bool {
		_, err := tryRun(bin, "server", "members")
		return err == nil
	})
	startNomad(t, bin, b, "ports {\n http = "+freePortOf()+"\n}",
		"-client", "-servers", "127.0.0.1:"+rpc, "-network-interface", "lo")
	nomad := func(args ...string) string { t.Helper(); return run(t, bin, args...) }
	eventually(t, 2*timeout, "both Nomad clients to be ready", func() bool {
		out, err := tryRun(bin, "node", "status")
		return err == nil && strings.Count(out, " ready") == 2
	})

	// Nomad pulls a ":latest" image every time (there is no registry here); another tag of
	// the test image is used as it is.
	const image = "drayage-test/busybox:nomad"
	a.docker("tag", testImage, image)
	b.docker("tag", testImage, image)
	job := filepath.Join(repoRoot, "docs", "nomad-job.nomad.hcl")
	container := func(n *node) string {
		return strings.TrimSpace(n.docker("ps", "-q", "--filter", "label=com.hashicorp.nomad.alloc_id"))
	}
	nomad("job", "run", "-detach", "-var", "node=node-a", "-var", "image="+image, job)
	eventually(t, 2*timeout, "the job's task to run on node-a", func() bool { return container(a) != "" })
	assert.Equal(t, "node-a", inspect(t, b.state, "appdata").Node)

	nomad("job", "run", "-detach", "-var", "node=node-b", "-var", "image="+image, job)
	eventually(t, 3*timeout, "the job's task to run on node-b", func() bool { return container(b) != "" && container(a) == "" })
	starts := b.docker("exec", container(b), "cat", "/data/starts")
	lines := strings.Split(starts, "\n")
	require.GreaterOrEqual(t, len(lines), 2, starts)
	assert.Contains(t, lines[0], "on node-a")
	assert.Contains(t, lines[len(lines)-1], "on node-b", "the task on node-b sees what it wrote on node-a")
	assert.Equal(t, "node-b", inspect(t, a.state, "appdata").Node)
	nomad("job", "stop", "-purge", "appdata")
}

// startNomad runs a Nomad agent named after node n whose docker driver uses n's engine,
// with more configuration in hcl; it stops when the test ends.
func startNomad(t *testing.T, bin string, n *node, hcl string, args ...string) {
	t.Helper()
	// Not t.TempDir: the client mounts tmpfs in its alloc dirs, unmounted here first.
	dir, err := os.MkdirTemp("", "drayage-nomad-")
	require.NoError(t, err)
	cfg := filepath.Join(dir, "agent.hcl")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`
name = %q
data_dir = %q
bind_addr = "127.0.0.1"
advertise {
  http = "127.0.0.1"
  rpc  = "127.0.0.1"
  serf = "127.0.0.1"
}
plugin "docker" {
  config {
    endpoint = %q
    volumes { enabled = true }
  }
}
client {
  # No cloud probes (and no AWS fingerprinting, which fails with AWS_CA_BUNDLE set).
  options { "fingerprint.denylist" = "env_aws,env_gce,env_azure,env_digitalocean" }
}
%s
`, n.name, filepath.Join(dir, "data"), n.engine.host, hcl)), 0o600))
	log, err := os.Create(filepath.Join(dir, "nomad.log"))
	require.NoError(t, err)
	cmd := exec.Command(bin, append([]string{"agent", "-config", cfg}, args...)...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		_ = cmd.Wait()
		_ = log.Close()
		if t.Failed() {
			b, _ := os.ReadFile(log.Name())
			t.Logf("nomad agent %s log:\n%s", n.name, b)
		}
		unmountUnder(dir)
		_ = os.RemoveAll(dir)
	})
}

// freePortOf returns a loopback port nobody listens on right now, as text.
func freePortOf() string {
	_, port, _ := strings.Cut(freeAddr(), ":")
	return port
}

// unmountUnder detaches every mount below dir, deepest first.
func unmountUnder(dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var points []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			points = append(points, f[4])
		}
	}
	for i := len(points) - 1; i >= 0; i-- {
		_ = syscall.Unmount(points[i], syscall.MNT_DETACH)
	}
}
