package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWrittenDataIsReadByTheNextContainer(t *testing.T) {
	p := managedPlugin
	v := uniqueName(t)
	removeVolumeAtEnd(t, v)
	docker(t, "volume", "create", "--driver", p.ref, "-o", "uid=1000", "-o", "gid=1000", "-o", "mode=0750", v)

	container(t, "-v", v+":/vol", testImage, "sh", "-c", "echo hello > /vol/greeting && mkdir -p /vol/sub && echo deep > /vol/sub/f")
	// Mounted where the image has no directory: the engine copies an image directory's
	// owner and mode into an empty volume, which would hide the volume's own.
	out := container(t, "-v", v+":/vol", testImage, "sh", "-c", "cat /vol/greeting /vol/sub/f && stat -c '%u:%g %a' /vol")
	assert.Equal(t, "hello\ndeep\n1000:1000 750", out)

	// The data lives in the state dir on the host, not under the plugin's directory.
	b, err := os.ReadFile(filepath.Join(p.state, "volumes", v, "data", "greeting"))
	require.NoError(t, err)
	assert.Equal(t, "hello\n", string(b))

	info := inspect(t, p.state, v)
	assert.Equal(t, "it-node", info.Node)
	assert.Equal(t, "idle", info.State)
	assert.Equal(t, int64(11), info.Size)

	status := docker(t, "volume", "inspect", "--format", "{{.Scope}} {{.Status.node}} {{.Status.state}} {{.Status.size}}", v)
	assert.Equal(t, "global it-node idle 11", status)
	assert.Contains(t, docker(t, "volume", "ls", "--filter", "driver="+p.ref, "--format", "{{.Name}}"), v)
}

func TestMountCountFollowsCpAndRestartAndGuardsRemove(t *testing.T) {
	p := managedPlugin
	v := uniqueName(t)
	removeVolumeAtEnd(t, v)
	docker(t, "volume", "create", "--driver", p.ref, v)
	id := docker(t, "run", "-d", "--label", containerLabel, "-v", v+":/data", testImage, "sleep", "3600")

	assert.Equal(t, 1, inspect(t, p.state, v).Mounts)
	assert.Equal(t, "mounted", docker(t, "volume", "inspect", "--format", "{{.Status.state}}", v))

	// docker cp mounts the volume again with the container's mount ID and unmounts it.
	src := filepath.Join(t.TempDir(), "copied")
	require.NoError(t, os.WriteFile(src, []byte("via docker cp\n"), 0o644))
	docker(t, "cp", src, id+":/data/copied")
	assert.Equal(t, "via docker cp", docker(t, "exec", id, "cat", "/data/copied"))
	assert.Equal(t, 1, inspect(t, p.state, v).Mounts, "docker cp must not leak or drop a mount")

	docker(t, "restart", "-t", "1", id)
	assert.Equal(t, "via docker cp", docker(t, "exec", id, "cat", "/data/copied"))
	assert.Equal(t, 1, inspect(t, p.state, v).Mounts, "restart unmounts and mounts once")

	out := mustFail(t, "docker", "volume", "rm", v)
	assert.Contains(t, out, "in use")
	assert.DirExists(t, filepath.Join(p.state, "volumes", v, "data"))

	docker(t, "rm", "-f", id)
	assert.Equal(t, 0, inspect(t, p.state, v).Mounts)
	docker(t, "volume", "rm", v)
	assert.NoDirExists(t, filepath.Join(p.state, "volumes", v))
	out = mustFail(t, binary, "--root", p.state, "volume", "inspect", v)
	assert.Contains(t, out, `volume "`+v+`" on node "it-node": no such volume`)
}

func TestBadNamesAndOptionsAreClearErrorsInTheDockerCLI(t *testing.T) {
	p := managedPlugin
	for _, name := range []string{"../escape", "-dash", strings.Repeat("n", 129)} {
		out := mustFail(t, "docker", "volume", "create", "--driver", p.ref, "--", name)
		assert.Contains(t, out, "invalid volume name", "name %q", name)
		assert.Contains(t, out, `node "it-node"`)
	}
	v := uniqueName(t)
	removeVolumeAtEnd(t, v)
	out := mustFail(t, "docker", "volume", "create", "--driver", p.ref, "-o", "colour=blue", v)
	assert.Contains(t, out, `invalid volume option "colour": valid options are allow-privileged, from, gid, max-lag, mode, replica-nodes, replicas, sha256, sync-interval, uid`)
	out = mustFail(t, "docker", "volume", "create", "--driver", p.ref, "-o", "mode=rwx", v)
	assert.Contains(t, out, `invalid volume option mode="rwx"`)
	assert.NotContains(t, docker(t, "volume", "ls", "-q"), v, "a refused create leaves no volume")
	entries, err := os.ReadDir(filepath.Join(p.state, "volumes"))
	require.NoError(t, err)
	for _, e := range entries {
		assert.NotEqual(t, v, e.Name())
		assert.NotContains(t, e.Name(), "escape")
	}
}

func TestPluginRestartKeepsVolumesDataAndMounts(t *testing.T) {
	p := managedPlugin
	idle, busy := uniqueName(t)+"-idle", uniqueName(t)+"-busy"
	removeVolumeAtEnd(t, idle)
	removeVolumeAtEnd(t, busy)
	docker(t, "volume", "create", "--driver", p.ref, "-o", "mode=0700", idle)
	container(t, "-v", idle+":/data", testImage, "sh", "-c", "echo kept > /data/f")
	id := docker(t, "run", "-d", "--label", containerLabel, "-v", busy+":/data", "--volume-driver", p.ref, testImage, "sleep", "3600")

	// A restart while no container runs. The engine refuses a plain disable while any
	// volume refers to the plugin, hence -f, as an upgrade does.
	docker(t, "stop", "-t", "1", id)
	require.NoError(t, p.disable(true))
	require.NoError(t, p.enable())
	assert.Equal(t, "kept", container(t, "-v", idle+":/data", testImage, "cat", "/data/f"))
	assert.Equal(t, map[string]string{"mode": "0700"}, inspect(t, p.state, idle).Options)

	// A forced restart while a container holds the volume: the daemon restores the mount
	// count from disk, and the container's stop balances it.
	docker(t, "start", id)
	docker(t, "exec", id, "sh", "-c", "echo before > /data/f")
	require.NoError(t, p.disable(true))
	require.NoError(t, p.enable())
	eventually(t, timeout, "the restarted plugin to answer", func() bool {
		_, err := tryRun(binary, "--root", p.state, "volume", "ls")
		return err == nil
	})
	assert.Equal(t, 1, inspect(t, p.state, busy).Mounts)
	assert.Equal(t, "before", docker(t, "exec", id, "cat", "/data/f"))
	docker(t, "stop", "-t", "1", id)
	assert.Equal(t, 0, inspect(t, p.state, busy).Mounts)
	assert.Equal(t, "before", container(t, "-v", busy+":/data", testImage, "cat", "/data/f"))
}

func TestPluginReinstallKeepsVolumes(t *testing.T) {
	p := managedPlugin
	v := uniqueName(t)
	removeVolumeAtEnd(t, v)
	docker(t, "volume", "create", "--driver", p.ref, v)
	container(t, "-v", v+":/data", testImage, "sh", "-c", "echo survives > /data/f")

	// Remove the plugin altogether, as an upgrade does, then install it again.
	require.NoError(t, p.disable(true))
	docker(t, "plugin", "rm", "-f", p.ref)
	require.NoError(t, p.build())
	require.NoError(t, p.configure())
	require.NoError(t, p.enable())

	assert.Equal(t, "survives", container(t, "-v", v+":/data", testImage, "cat", "/data/f"))
	assert.Contains(t, docker(t, "volume", "ls", "-q"), v)
}

// In a container, a volume of the managed plugin is mounted nosuid,nodev unless it was
// created with allow-privileged=true: the flags are set before the mount propagates from
// the plugin to the engine.
func TestAContainerSeesItsVolumeNosuidNodevUnlessPrivileged(t *testing.T) {
	p := managedPlugin
	plain, priv := uniqueName(t)+"-plain", uniqueName(t)+"-priv"
	removeVolumeAtEnd(t, plain)
	removeVolumeAtEnd(t, priv)
	docker(t, "volume", "create", "--driver", p.ref, plain)
	docker(t, "volume", "create", "--driver", p.ref, "-o", "allow-privileged=true", priv)
	opts := func(v string) string {
		return container(t, "-v", v+":/vol", testImage, "sh", "-c", `grep " /vol " /proc/mounts | cut -d" " -f4`)
	}
	assert.Contains(t, opts(plain), "nosuid")
	assert.Contains(t, opts(plain), "nodev")
	assert.NotContains(t, opts(priv), "nosuid")
	assert.NotContains(t, opts(priv), "nodev")
}
