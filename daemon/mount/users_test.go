package mount

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// A fake /proc: each process a mount namespace link and a mount table.
type fakeProc struct {
	t   *testing.T
	dir string
}

func newFakeProc(t *testing.T) fakeProc {
	return fakeProc{t: t, dir: t.TempDir()}
}

// process adds process pid with the given mountinfo lines.
func (p fakeProc) process(pid string, lines ...string) {
	d := filepath.Join(p.dir, pid)
	require.NoError(p.t, os.MkdirAll(d, 0o755))
	var text string
	for _, l := range lines {
		text += l + "\n"
	}
	require.NoError(p.t, os.WriteFile(filepath.Join(d, "mountinfo"), []byte(text), 0o644))
}

const (
	rootfs = "20 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw"
	// The plugin's bind of volume v at /mnt/drayage/v, and its propagated copy in the
	// engine's namespace: one peer group.
	pluginView = "40 20 8:1 /state/volumes/v/data /mnt/drayage/v rw,nosuid,nodev shared:7 - ext4 /dev/sda1 rw"
	engineView = "90 80 8:1 /state/volumes/v/data /var/lib/docker/plugins/abc/propagated-mount/v rw,nosuid,nodev shared:7 - ext4 /dev/sda1 rw"
)

var self = view{id: 40, major: 8, minor: 1, root: "/state/volumes/v/data", peers: "shared:7"}

func TestDrayagesOwnViewsOfAVolumeAreNoUse(t *testing.T) {
	p := newFakeProc(t)
	p.process("1", rootfs)
	p.process("50", rootfs, pluginView)
	p.process("60", rootfs, engineView)
	p.process("61", rootfs, engineView)
	used, err := scanUsers(p.dir, self)
	require.NoError(t, err)
	assert.False(t, used)
}

func TestAContainersMountOfAVolumeIsUse(t *testing.T) {
	for name, line := range map[string]string{
		"the volume":          "300 290 8:1 /state/volumes/v/data /data rw,nosuid,nodev - ext4 /dev/sda1 rw",
		"a subpath":           "300 290 8:1 /state/volumes/v/data/sub /data rw - ext4 /dev/sda1 rw",
		"a slave of the bind": "300 290 8:1 /state/volumes/v/data /data rw master:7 - ext4 /dev/sda1 rw",
	} {
		t.Run(name, func(t *testing.T) {
			p := newFakeProc(t)
			p.process("60", rootfs, engineView)
			p.process("70", "290 1 0:50 / / rw - overlay overlay rw", line)
			used, err := scanUsers(p.dir, self)
			require.NoError(t, err)
			assert.True(t, used)
		})
	}
}

func TestMountsOfOtherTreesAreNoUse(t *testing.T) {
	p := newFakeProc(t)
	p.process("70",
		"300 290 8:1 /state/volumes/v/data2 /data rw - ext4 /dev/sda1 rw", // a volume whose name starts alike
		"301 290 8:2 /state/volumes/v/data /other rw - ext4 /dev/sdb1 rw", // the same path on another disk
		"302 290 8:1 /state/volumes/w/data /w rw - ext4 /dev/sda1 rw")
	used, err := scanUsers(p.dir, self)
	require.NoError(t, err)
	assert.False(t, used)
}

func TestAProcessThatExitsDuringTheScanIsSkipped(t *testing.T) {
	p := newFakeProc(t)
	require.NoError(t, os.MkdirAll(filepath.Join(p.dir, "80"), 0o755)) // no mount table: gone
	p.process("90", "300 290 8:1 /state/volumes/v/data /data rw - ext4 /dev/sda1 rw")
	used, err := scanUsers(p.dir, self)
	require.NoError(t, err)
	assert.True(t, used, "the processes after it are read")
}

func TestWithoutAPeerGroupOnlyTheBindItselfIsDrayages(t *testing.T) {
	// A daemon run on the host (no plugin): its bind propagates nowhere.
	s := self
	s.peers = ""
	p := newFakeProc(t)
	p.process("50", "40 20 8:1 /state/volumes/v/data /mnt/drayage/v rw - ext4 /dev/sda1 rw")
	used, err := scanUsers(p.dir, s)
	require.NoError(t, err)
	assert.False(t, used)
	p.process("70", "300 290 8:1 /state/volumes/v/data /data rw - ext4 /dev/sda1 rw")
	used, err = scanUsers(p.dir, s)
	require.NoError(t, err)
	assert.True(t, used)
}

// holdNamespace keeps a new mount namespace, a copy of this one made with the given
// propagation, until the returned func is called.
func holdNamespace(t *testing.T, propagation string) func() {
	cmd := exec.Command("unshare", "--mount", "--propagation", propagation, "sleep", "60")
	require.NoError(t, cmd.Start())
	// unshare makes the namespace before it runs sleep.
	require.Eventually(t, func() bool {
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", cmd.Process.Pid))
		return strings.HasSuffix(exe, "/sleep")
	}, 10*time.Second, 10*time.Millisecond)
	return func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
}

// sharedBind binds a new directory at a new target, shared, as a bind under a managed
// plugin's propagated mount is.
func sharedBind(t *testing.T) string {
	if os.Geteuid() != 0 {
		t.Fatal("this test makes real bind mounts and namespaces: run it as root (make test)")
	}
	dir := t.TempDir()
	src, target := filepath.Join(dir, "src"), filepath.Join(dir, "target")
	require.NoError(t, os.Mkdir(src, 0o755))
	require.NoError(t, os.Mkdir(target, 0o755))
	var m Bind
	require.NoError(t, m.Bind(src, target, Options{}))
	t.Cleanup(func() { _ = m.Unbind(target) })
	require.NoError(t, unix.Mount("", target, "", unix.MS_SHARED, ""))
	return target
}

// A bind is propagated when another namespace holds a copy in its peer group (the
// engine's, through the propagated mount); a private copy (a container's) is not that.
func TestPropagatedNeedsAPeerInAnotherNamespace(t *testing.T) {
	target := sharedBind(t)
	var m Bind
	require.ErrorIs(t, m.Propagated(target), ErrNotPropagated, "no other namespace")
	stop := holdNamespace(t, "private")
	require.ErrorIs(t, m.Propagated(target), ErrNotPropagated, "a private copy only")
	stop()
	stop = holdNamespace(t, "unchanged")
	defer stop()
	require.NoError(t, m.Propagated(target))
	require.NoError(t, m.Propagated(target), "again, from the hint")

	require.NoError(t, unix.Mount("", target, "", unix.MS_PRIVATE, ""))
	require.ErrorIs(t, m.Propagated(target), ErrNotPropagated, "a bind that propagates nowhere")
}

// The real scan, on this kernel: a namespace that shares the bind's peer group is one
// of drayage's views (the engine's); one with a private copy is a container's.
func TestInUseSeesAnotherNamespacesPrivateMount(t *testing.T) {
	target := sharedBind(t)
	var m Bind
	used, err := m.InUse(target)
	require.NoError(t, err)
	assert.False(t, used, "only this namespace holds it")

	hold := func(propagation string) func() { return holdNamespace(t, propagation) }
	stop := hold("unchanged")
	used, err = m.InUse(target)
	stop()
	require.NoError(t, err)
	assert.False(t, used, "a copy in the bind's peer group is drayage's view, as in the engine's namespace")

	stop = hold("private")
	used, err = m.InUse(target)
	stop()
	require.NoError(t, err)
	assert.True(t, used, "a private copy is a container's")

	used, err = m.InUse(target)
	require.NoError(t, err)
	assert.False(t, used, "the container is gone")

	_, err = m.InUse(filepath.Join(filepath.Dir(target), "src"))
	assert.ErrorIs(t, err, ErrUseUnknown, "nothing is bound there")
}
