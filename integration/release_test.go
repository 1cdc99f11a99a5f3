package integration

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/cluster/storetest"
)

// Installs and upgrades as Docker users make them: make release pushes the plugin to a
// real registry (Debian's docker-registry, the CNCF distribution registry), engines
// install it with docker plugin install --alias drayage and upgrade it with docker plugin
// upgrade, one node at a time, while volumes move between nodes of both versions.

// startRegistry runs a registry on the test bridge (the engines reach it there, as an
// insecure registry: scripts/engine.sh) and returns its host:port.
func startRegistry(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("docker-registry")
	require.NoError(t, err, "Debian's docker-registry is not installed (make test installs it)")
	dir := t.TempDir()
	addr := bridgeHost + ":" + strconv.Itoa(storetest.FreePort(t))
	conf := filepath.Join(dir, "config.yml")
	require.NoError(t, os.WriteFile(conf, fmt.Appendf(nil, "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: %s\n", filepath.Join(dir, "data"), addr), 0o600))
	cmd := exec.Command(bin, "serve", conf)
	log, err := os.Create(filepath.Join(dir, "registry.log"))
	require.NoError(t, err)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(log.Name())
			t.Logf("the registry said:\n%s", b)
		}
	})
	eventually(t, timeout, "the registry to answer", func() bool {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return addr
}

// release runs make release against the engine builder, as a release manager would, and
// returns the rootfs digest it printed.
func release(t *testing.T, builder *engine, registry, version string) string {
	t.Helper()
	cmd := exec.Command("make", "--no-print-directory", "-C", repoRoot, "release", "REGISTRY="+registry+"/drayage", "VERSION="+version)
	cmd.Env = append(os.Environ(), "DOCKER_HOST="+builder.host)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "make release VERSION=%s: %s", version, out)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	digest := lines[len(lines)-1]
	require.True(t, strings.HasPrefix(digest, "sha256:"), "make release ends with the rootfs digest: %s", out)
	return digest
}

// pluginEnv reads one setting of the node's drayage plugin.
func pluginEnv(n *node, name string) string {
	for _, kv := range strings.Split(n.docker("plugin", "inspect", "drayage", "-f", "{{range .Settings.Env}}{{println .}}{{end}}"), "\n") {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v
		}
	}
	return ""
}

// awaitDaemon waits until the node's plugin daemon answers.
func (n *node) awaitDaemon() {
	n.t.Helper()
	eventually(n.t, timeout, "node "+n.name+"'s daemon to answer", func() bool {
		_, err := tryRun(binary, "--root", n.state, "volume", "ls")
		return err == nil
	})
}

// upgrade upgrades the node's plugin to ref as the README says (disable -f, upgrade, set
// the mounts' sources again, enable), and returns how long the plugin was down.
func (n *node) upgrade(ref string) time.Duration {
	n.t.Helper()
	start := time.Now()
	n.docker("plugin", "disable", "-f", "drayage")
	// --skip-remote-check: the CLI otherwise asks whether to upgrade to another tag, and
	// takes no answer for a no.
	n.docker("plugin", "upgrade", "--grant-all-permissions", "--skip-remote-check", "drayage", ref)
	// The upgrade keeps every DRAYAGE_* setting the node was installed with. The mounts'
	// sources it keeps only in .Settings.Mounts, which the engine does not read when it
	// starts the plugin: it mounts what .Config.Mounts says, the new config's defaults
	// (moby's InitSpec). A node whose state or TLS dir is not the default sets them again.
	for _, kv := range n.env {
		k, v, _ := strings.Cut(kv, "=")
		assert.Equal(n.t, v, pluginEnv(n, k), "node %s: the upgrade kept the setting %s", n.name, k)
	}
	mounts := func(field string) string {
		return strings.TrimSpace(n.docker("plugin", "inspect", "drayage", "-f", "{{range ."+field+".Mounts}}{{.Name}}={{.Source}} {{end}}"))
	}
	assert.Equal(n.t, "state=/var/lib/drayage tls=/etc/drayage", mounts("Config"), "node %s: the upgrade put the sources the engine mounts back to the defaults", n.name)
	n.docker("plugin", "set", "drayage", "state.source="+n.state, "tls.source="+n.tls)
	assert.Equal(n.t, "state="+n.state+" tls="+n.tls, mounts("Config"), "node %s: set again", n.name)
	if out, err := tryRun("docker", "-H", n.engine.host, "plugin", "enable", "drayage"); err != nil {
		log := n.log()
		n.t.Fatalf("docker plugin enable on %s after the upgrade: %v: %s\nthe engine's log ends:\n%s", n.name, err, out, log[max(0, len(log)-6000):])
	}
	n.awaitDaemon()
	return time.Since(start)
}

func TestInstallAndUpgradeFromARegistry(t *testing.T) {
	nodes, _ := prepareNodes(t, embeddedStore, []string{"rel-a", "rel-b"}, nil)
	a, b := nodes[0], nodes[1]
	builder, _ := startNetEngine(t)
	registry := startRegistry(t)

	// Reproducible: the same commit and version give the same rootfs, by digest.
	x := release(t, builder, registry, "1.0.0")
	assert.Equal(t, x, release(t, builder, registry, "1.0.0"), "two builds of one commit and version have one rootfs digest")
	y := release(t, builder, registry, "1.1.0")
	assert.NotEqual(t, x, y, "another version stamps the binary")
	t.Logf("rootfs digests: 1.0.0 %s (twice), 1.1.0 %s", x, y)
	refX, refY := registry+"/drayage/drayage:1.0.0", registry+"/drayage/drayage:1.1.0"

	for _, n := range nodes {
		out := n.docker(append([]string{"plugin", "install", "--grant-all-permissions", "--alias", "drayage", refX,
			"state.source=" + n.state, "tls.source=" + n.tls}, n.env...)...)
		t.Logf("docker plugin install on %s printed:\n%s", n.name, out)
		n.awaitDaemon()
	}
	meshedNodes(t, nodes)
	version := func(n *node) string { return nodeList(t, a.state)[n.name].Version }
	assert.Equal(t, "1.0.0", version(a))

	// A volume made and written on a, read on b: the driver is "drayage" (the alias).
	a.docker("volume", "create", "--driver", "drayage", "relvol")
	a.docker("run", "--rm", "--network", "none", "-v", "relvol:/data", testImage, "sh", "-c", "echo made-on-1.0.0 > /data/log")
	assert.Equal(t, "made-on-1.0.0", b.docker("run", "--rm", "--network", "none", "-v", "relvol:/data", testImage, "cat", "/data/log"))
	driver := func(n *node) string {
		return strings.TrimSpace(n.docker("volume", "inspect", "-f", "{{.Driver}}", "relvol"))
	}
	assert.Equal(t, "drayage:latest", driver(b), "the alias, as the engine writes it")

	// Back on a, a container keeps writing while a's plugin is upgraded under it.
	writer := a.docker("run", "-d", "--network", "none", "-v", "relvol:/data", testImage, "sh", "-c",
		"i=0; while :; do echo line-$i >> /data/log; i=$((i+1)); usleep 20000; done")
	lines := func() int {
		b, _ := os.ReadFile(filepath.Join(a.state, "volumes", "relvol", "data", "log"))
		return strings.Count(string(b), "\n")
	}
	eventually(t, timeout, "the writer to write", func() bool { return lines() > 5 })
	before := lines()
	start := time.Now()
	window := a.upgrade(refY)
	during := lines() - before
	meshedNodes(t, nodes)
	seen := time.Since(start)
	t.Logf("upgrade of rel-a to 1.1.0 (disable -f, upgrade, set, enable, daemon answering): %s, and rel-b reaching it again %s after the start; the container wrote %d lines in the first %s (one each 20 ms at most: %d) and kept running",
		window.Round(time.Millisecond), seen.Round(time.Millisecond), during, window.Round(time.Millisecond), window/(20*time.Millisecond))
	assert.Positive(t, during, "the running container kept writing to its volume through the upgrade")
	assert.Equal(t, "true", strings.TrimSpace(a.docker("inspect", "-f", "{{.State.Running}}", writer)))
	t.Logf("rel-a's plugin after the upgrade: %s", a.docker("plugin", "inspect", "drayage", "-f", "{{.PluginReference}} {{.Config.Rootfs.DiffIds}} enabled={{.Enabled}}"))
	assert.Equal(t, "1.1.0", version(a))
	assert.Equal(t, "1.0.0", version(b))
	a.docker("rm", "-f", writer)

	// The CLI comes with the plugin, as the README says to take it.
	cli := filepath.Join(strings.TrimSpace(a.docker("info", "-f", "{{.DockerRootDir}}")), "plugins",
		strings.TrimSpace(a.docker("plugin", "inspect", "-f", "{{.Id}}", "drayage")), "rootfs", "drayage")
	v := run(t, cli, "version")
	assert.Contains(t, v, "1.1.0")
	assert.Contains(t, v, "protocol: 1")
	t.Logf("drayage version, from the plugin's rootfs:\n%s", v)
	written := lines()

	// Both ways between 1.1.0 (a) and 1.0.0 (b).
	final := b.docker("run", "--rm", "--network", "none", "-v", "relvol:/data", testImage, "sh", "-c", "echo on-1.0.0 >> /data/log; wc -l < /data/log")
	a.docker("run", "--rm", "--network", "none", "-v", "relvol:/data", testImage, "sh", "-c", "echo on-1.1.0 >> /data/log")
	n, err := strconv.Atoi(strings.TrimSpace(final))
	require.NoError(t, err, final)
	assert.Equal(t, written+1, n, "every line the container wrote, through the upgrade and after, arrived on b")

	// b upgrades too; the data is whole, the driver name unchanged.
	b.upgrade(refY)
	meshedNodes(t, nodes)
	out := b.docker("run", "--rm", "--network", "none", "-v", "relvol:/data", testImage, "sh", "-c", "head -1 /data/log; tail -2 /data/log")
	assert.Equal(t, "made-on-1.0.0\non-1.0.0\non-1.1.0", out)
	assert.Equal(t, "drayage:latest", driver(b), "the driver name did not change with the version")
	assert.Equal(t, "drayage:latest", driver(a))
	eventually(t, timeout, "node rel-a to see rel-b at 1.1.0", func() bool { return version(b) == "1.1.0" })
}
