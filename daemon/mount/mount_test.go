package mount

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// A real bind mount: make test runs as root.
func TestBindShowsSourceAndUnbindRemovesIt(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test makes real bind mounts: run it as root (make test)")
	}
	dir := t.TempDir()
	src, target := filepath.Join(dir, "src"), filepath.Join(dir, "target")
	require.NoError(t, os.Mkdir(src, 0o755))
	require.NoError(t, os.Mkdir(target, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644))

	var m Bind
	ok, err := m.Mounted(target)
	require.NoError(t, err)
	assert.False(t, ok)

	require.NoError(t, m.Bind(src, target, Options{}))
	t.Cleanup(func() { _ = m.Unbind(target) })
	ok, err = m.Mounted(target)
	require.NoError(t, err)
	assert.True(t, ok)
	assert.FileExists(t, filepath.Join(target, "f"))

	require.NoError(t, m.Unbind(target))
	ok, err = m.Mounted(target)
	require.NoError(t, err)
	assert.False(t, ok)
	assert.NoFileExists(t, filepath.Join(target, "f"))
	require.NoError(t, m.Unbind(target), "unbinding what is not mounted is harmless")

	ok, err = m.Mounted(filepath.Join(dir, "missing"))
	require.NoError(t, err)
	assert.False(t, ok)
}

// A volume is mounted nosuid,nodev unless it allows privileged content.
func TestBindIsNosuidNodevUnlessPrivileged(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test makes real bind mounts: run it as root (make test)")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	require.NoError(t, os.Mkdir(src, 0o755))
	flags := func(o Options) int64 {
		target, err := os.MkdirTemp(dir, "target")
		require.NoError(t, err)
		var m Bind
		require.NoError(t, m.Bind(src, target, o))
		defer func() { require.NoError(t, m.Unbind(target)) }()
		var st unix.Statfs_t
		require.NoError(t, unix.Statfs(target, &st))
		return st.Flags
	}
	plain := flags(Options{})
	assert.NotZero(t, plain&unix.ST_NOSUID, "nosuid")
	assert.NotZero(t, plain&unix.ST_NODEV, "nodev")
	privileged := flags(Options{Privileged: true})
	assert.Zero(t, privileged&unix.ST_NOSUID, "setuid honoured")
	assert.Zero(t, privileged&unix.ST_NODEV, "devices honoured")

	// The fallback for kernels without mount_setattr gives the same flags.
	target := filepath.Join(dir, "fallback")
	require.NoError(t, os.Mkdir(target, 0o755))
	require.NoError(t, remountUnprivileged(src, target))
	var st unix.Statfs_t
	require.NoError(t, unix.Statfs(target, &st))
	assert.NotZero(t, st.Flags&unix.ST_NOSUID)
	assert.NotZero(t, st.Flags&unix.ST_NODEV)
	require.NoError(t, Bind{}.Unbind(target))
}
