package transfer

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// smallFS mounts a tmpfs of size bytes for the test (the tests run as root).
func smallFS(t testing.TB, size string) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size), "mount a tmpfs (run the tests as root)")
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

func TestConcurrentPullsReserveFreeSpaceTogether(t *testing.T) {
	fs := smallFS(t, "8m")
	five := []entry{root, {Path: "f", Kind: kindFile, Mode: 0o644, Size: 5 << 20}}
	first, err := openSink(filepath.Join(fs, "a"), five, SinkOptions{})
	require.NoError(t, err, "5 MiB fit in 8")
	_, err = openSink(filepath.Join(fs, "b"), five, SinkOptions{})
	require.Error(t, err, "a second 5 MiB does not fit beside the first, though neither has written anything yet")
	assert.Contains(t, err.Error(), "of which other pulls running now need 5242880; free some space, or retry once they are done")
	assert.NoDirExists(t, filepath.Join(fs, "b"), "refused before staging was made")
	require.NoError(t, first.Close())
	second, err := openSink(filepath.Join(fs, "b"), five, SinkOptions{})
	require.NoError(t, err, "the space is free again once the first pull ends")
	require.NoError(t, second.Close())
}
