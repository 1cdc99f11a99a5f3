package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The managed plugin in an engine that restarts: the engine re-enables the plugin, the
// volume and its data are still there, and a container with a restart policy gets its
// volume back with the mount count balanced.
func TestEngineRestartKeepsVolumesAndMountCounts(t *testing.T) {
	ref := "drayage-restart:dev"
	e, state := startPluginEngine(t, ref)

	e.docker(t, "volume", "create", "--driver", ref, "rv")
	e.docker(t, "run", "--rm", "--network", "none", "-v", "rv:/data", testImage, "sh", "-c", "echo kept > /data/f")
	id := e.docker(t, "run", "-d", "--restart", "always", "--stop-timeout", "1", "--network", "none", "-v", "rv:/data", testImage, "sleep", "3600")
	assert.Equal(t, 1, inspect(t, state, "rv").Mounts)

	run(t, e.script(), "restart", e.dir)

	eventually(t, timeout, "the container to run again after the engine restart", func() bool {
		out, err := tryRun("docker", "-H", e.host, "inspect", "--format", "{{.State.Running}}", id)
		return err == nil && strings.TrimSpace(out) == "true"
	})
	assert.Equal(t, "kept", e.docker(t, "exec", id, "cat", "/data/f"))
	assert.Equal(t, 1, inspect(t, state, "rv").Mounts, "the engine's stop unmounted, its start mounted once")
	assert.Equal(t, "rv", e.docker(t, "volume", "ls", "-q"))

	e.docker(t, "rm", "-f", id)
	assert.Equal(t, 0, inspect(t, state, "rv").Mounts)
	e.docker(t, "volume", "rm", "rv")
	assert.NoDirExists(t, filepath.Join(state, "volumes", "rv"))
}

// startPluginEngine starts a throwaway engine with the managed plugin enabled as ref, on
// a state dir of its own (returned).
func startPluginEngine(t *testing.T, ref string) (*engine, string) {
	e := startEngine(t)
	base := t.TempDir()
	state, tls := filepath.Join(base, "state"), filepath.Join(base, "tls")
	for _, d := range []string{state, tls} {
		require.NoError(t, os.MkdirAll(d, 0o700))
	}
	e.docker(t, "plugin", "create", ref, filepath.Join(repoRoot, "build", "plugin"))
	e.docker(t, "plugin", "set", ref, "state.source="+state, "tls.source="+tls, "DRAYAGE_NAME=restart-node")
	e.docker(t, "plugin", "enable", ref)
	return e, state
}

// While the plugin is disabled (an upgrade, a restart by hand), the engine does not
// reach its volumes: a container that names the driver (--mount …,volume-driver=, as
// Swarm and Nomad do; or --volume-driver) is refused, and nothing it would write goes
// anywhere. One that names only the volume (-v NAME:/data) is refused too when the
// engine remembers the volume, but the fault campaign saw such a container, started on a
// node's engine during a plugin restart, run on a volume the engine made itself: what it
// wrote never reached drayage's volume. The docs tell operators to name the driver.
func TestAContainerStartedWhileThePluginIsDisabledIsRefused(t *testing.T) {
	ref := "drayage-window:dev"
	e, state := startPluginEngine(t, ref)
	e.docker(t, "volume", "create", "--driver", ref, "wv")
	e.docker(t, "plugin", "disable", "-f", ref)

	out := mustFail(t, "docker", "-H", e.host, "run", "--rm", "--network", "none",
		"--mount", "type=volume,source=wv,target=/data,volume-driver="+ref, testImage, "sh", "-c", "echo named > /data/f")
	assert.Contains(t, out, "plugin "+ref+" found but disabled")
	out = mustFail(t, "docker", "-H", e.host, "run", "--rm", "--network", "none",
		"--volume-driver", ref, "-v", "wv:/data", testImage, "sh", "-c", "echo named > /data/f")
	assert.Contains(t, out, "plugin "+ref+" found but disabled")

	e.docker(t, "plugin", "enable", ref)
	assert.NoFileExists(t, filepath.Join(state, "volumes", "wv", "data", "f"))
	e.docker(t, "run", "--rm", "--network", "none", "--mount", "type=volume,source=wv,target=/data,volume-driver="+ref, testImage, "sh", "-c", "echo named > /data/f")
	assert.FileExists(t, filepath.Join(state, "volumes", "wv", "data", "f"), "enabled again, the same command reaches the volume")
}
