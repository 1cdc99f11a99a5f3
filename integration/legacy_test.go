package integration

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Legacy mode: drayage runs on the host and the engine finds it by its socket in
// /run/docker/plugins. The test runs its own engine so the main one never learns of a
// plugin that then goes away.
func TestLegacyDaemonServesTheEngineAndSurvivesRestartAndCrash(t *testing.T) {
	e := startEngine(t)
	root := filepath.Join(t.TempDir(), "state")
	d := startLegacy(t, e, "legacy-node", "drayage-legacy", root)

	e.docker(t, "volume", "create", "--driver", "drayage-legacy", "lv")
	e.docker(t, "run", "--rm", "--network", "none", "-v", "lv:/data", testImage, "sh", "-c", "echo legacy > /data/f")
	assert.Equal(t, "legacy", e.docker(t, "run", "--rm", "--network", "none", "-v", "lv:/data", testImage, "cat", "/data/f"))
	assert.FileExists(t, filepath.Join(root, "volumes", "lv", "data", "f"))

	// A clean restart keeps the volume and its data.
	d.kill(syscall.SIGTERM)
	assert.NoFileExists(t, filepath.Join(root, "control.sock"), "a clean stop removes the control socket")
	d.start()
	assert.Equal(t, "lv", e.docker(t, "volume", "ls", "-q"))
	assert.Equal(t, "legacy", e.docker(t, "run", "--rm", "--network", "none", "-v", "lv:/data", testImage, "cat", "/data/f"))

	// A crash while a container holds the volume: the restarted daemon knows the volume is
	// still mounted and the container's stop balances the count.
	id := e.docker(t, "run", "-d", "--network", "none", "-v", "lv:/data", testImage, "sleep", "3600")
	assert.Equal(t, 1, inspect(t, root, "lv").Mounts)
	d.kill(syscall.SIGKILL)
	d.start()
	assert.Equal(t, 1, inspect(t, root, "lv").Mounts)
	assert.Contains(t, d.logText(), `msg="restored mount" node=legacy-node volume=lv mounts=1`)
	e.docker(t, "exec", id, "sh", "-c", "echo after-crash > /data/f")
	out := mustFail(t, "docker", "-H", e.host, "volume", "rm", "lv")
	assert.Contains(t, out, "in use")
	e.docker(t, "rm", "-f", id)
	assert.Equal(t, 0, inspect(t, root, "lv").Mounts)
	assert.Equal(t, "after-crash", e.docker(t, "run", "--rm", "--network", "none", "-v", "lv:/data", testImage, "cat", "/data/f"))

	e.docker(t, "volume", "rm", "lv")
	_, err := os.Stat(filepath.Join(root, "volumes", "lv"))
	require.ErrorIs(t, err, os.ErrNotExist)
}
