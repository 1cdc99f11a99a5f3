package mount

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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

	require.NoError(t, m.Bind(src, target))
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
