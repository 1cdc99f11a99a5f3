package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The plugin's propagated mount stops reaching the engine (the fault campaign saw it
// once, after two plugin restarts raced on one engine): the daemon's binds stay in its
// own namespace, and the engine hands a container the plain directory under the bind.
// That container wrote 52 acknowledged records there, not into the volume. A Mount the
// engine would not see is refused now, saying to restart the plugin; after a restart the
// same command reaches the volume.
func TestAMountTheEngineCannotSeeIsRefused(t *testing.T) {
	ref := "drayage-propagation:dev"
	e, state := startPluginEngine(t, ref)
	e.docker(t, "volume", "create", "--driver", ref, "pv")
	mount := "type=volume,source=pv,target=/data,volume-driver=" + ref
	write := func(file string) []string {
		return []string{"-H", e.host, "run", "--rm", "--network", "none", "--mount", mount, testImage, "sh", "-c", "echo kept > /data/" + file}
	}
	run(t, "docker", write("first")...)
	assert.FileExists(t, filepath.Join(state, "volumes", "pv", "data", "first"))

	// Cut the propagation: the plugin's mount dir stays the same directory, but its
	// binds no longer reach the engine's namespace.
	pid := daemonPID("restart-node")
	require.NotZero(t, pid, "the plugin's daemon runs")
	rootfs, _ := filepath.Glob(filepath.Join(e.dir, "data", "plugins", "*", "rootfs"))
	require.Len(t, rootfs, 1, "the engine's one plugin")
	busybox, err := exec.LookPath("busybox")
	require.NoError(t, err, "busybox-static (make test installs it)")
	run(t, "cp", busybox, filepath.Join(rootfs[0], "busybox"))
	run(t, "nsenter", fmt.Sprintf("--mount=/proc/%d/ns/mnt", pid), "/busybox", "mount", "--make-private", "/mnt/drayage")

	out := mustFail(t, "docker", write("lost")...)
	assert.Contains(t, out, `volume "pv" on node "restart-node"`)
	assert.Contains(t, out, "restart the plugin")
	lost, _ := filepath.Glob(filepath.Join(e.dir, "data", "plugins", "*", "propagated-mount", "pv", "lost"))
	assert.Empty(t, lost, "nothing was written beside the volume")
	assert.NoFileExists(t, filepath.Join(state, "volumes", "pv", "data", "lost"))
	assert.Equal(t, 0, inspect(t, state, "pv").Mounts, "the refused Mount left no mount behind")

	e.docker(t, "plugin", "disable", "-f", ref)
	e.docker(t, "plugin", "enable", ref)
	run(t, "docker", write("after")...)
	assert.FileExists(t, filepath.Join(state, "volumes", "pv", "data", "after"), "after a restart the same command reaches the volume")
	entries, err := os.ReadDir(filepath.Join(state, "volumes", "pv", "data"))
	require.NoError(t, err)
	var names []string
	for _, en := range entries {
		names = append(names, en.Name())
	}
	assert.Equal(t, "after first", strings.Join(names, " "))
}
