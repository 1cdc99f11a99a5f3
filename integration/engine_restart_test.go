package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// The managed plugin in an engine that restarts: the engine re-enables the plugin, the
// volume and its data are still there, and a container with a restart policy gets its
// volume back with the mount count balanced.
func TestEngineRestartKeepsVolumesAndMountCounts(t *testing.T) {
	e := startEngine(t)
	base := t.TempDir()
	state, tls := filepath.Join(base, "state"), filepath.Join(base, "tls")
	for _, d := range []string{state, tls} {
		assert.NoError(t, os.MkdirAll(d, 0o700))
	}
	ref := "drayage-restart:dev"
	e.docker(t, "plugin", "create", ref, filepath.Join(repoRoot, "build", "plugin"))
	e.docker(t, "plugin", "set", ref, "state.source="+state, "tls.source="+tls, "DRAYAGE_NAME=restart-node")
	e.docker(t, "plugin", "enable", ref)

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
