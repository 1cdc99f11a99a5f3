package transfer

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// walkEntries is the tree under root as walk lists it.
func walkEntries(root string) ([]entry, error) {
	t, err := walk(context.Background(), root)
	return t.entries, err
}

// walk lists a directory right after its parent's entry, each directory's names in byte
// order: "a", "a/x", then "a.b", though "a.b" sorts before "a/x" as a string. A directory
// with more names than one worker takes at a time is read whole.
func TestWalkListsDepthFirstInNameOrder(t *testing.T) {
	root := t.TempDir()
	must := func(err error) { t.Helper(); require.NoError(t, err) }
	must(os.MkdirAll(filepath.Join(root, "a", "x"), 0o755))
	must(os.WriteFile(filepath.Join(root, "a.b"), nil, 0o644))
	must(os.WriteFile(filepath.Join(root, "b"), nil, 0o644))
	must(os.MkdirAll(filepath.Join(root, "many", "sub"), 0o755))
	for i := range 3*walkChunk + 5 {
		must(os.WriteFile(filepath.Join(root, "many", fmt.Sprintf("f%04d", i)), nil, 0o644))
	}
	must(os.WriteFile(filepath.Join(root, "many", "sub", "deep"), nil, 0o644))
	must(unix.Setxattr(filepath.Join(root, "many", "f0200"), "user.k", []byte("v"), 0))

	var want []string
	var list func(rel string)
	list = func(rel string) { // os.ReadDir sorts by name
		want = append(want, rel)
		des, err := os.ReadDir(filepath.Join(root, rel))
		must(err)
		for _, de := range des {
			if de.IsDir() {
				list(path.Join(rel, de.Name()))
			} else {
				want = append(want, path.Join(rel, de.Name()))
			}
		}
	}
	list(".")

	entries, err := walkEntries(root)
	must(err)
	var got []string
	for _, e := range entries {
		got = append(got, e.Path)
	}
	assert.Equal(t, want, got)
	for _, e := range entries {
		if e.Path == "many/f0200" {
			assert.Equal(t, []xattr{{Name: "user.k", Value: []byte("v")}}, e.Xattrs)
		}
	}

	// Kernels before Linux 6.13 lack listxattrat: the walk falls back to paths.
	noListxattrat.Store(true)
	t.Cleanup(func() { noListxattrat.Store(false) })
	again, err := walkEntries(root)
	must(err)
	assert.Equal(t, entries, again)
}

func TestWalkNamesWhatItCannotRead(t *testing.T) {
	_, err := walkEntries(filepath.Join(t.TempDir(), "missing"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "missing")

	root := t.TempDir()
	require.NoError(t, unix.Mknod(filepath.Join(root, "sock"), unix.S_IFSOCK|0o600, 0))
	_, err = walkEntries(root)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "sock: sockets and other special files can't be moved")
}

// A mount inside a volume (a directory or a file mounted there) is not the volume's: the
// sender never leaves the volume's file system, and says what it left out.
func TestTheSenderNeverCrossesIntoAMountInsideTheVolume(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	outside := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(src, "d", "mnt"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(src, "d", "own"), []byte("mine"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(src, "file-mnt"), nil, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(outside, "secret"), []byte("host data"), 0o600))
	require.NoError(t, unix.Mount(outside, filepath.Join(src, "d", "mnt"), "", unix.MS_BIND, ""), "bind mount (run the tests as root)")
	t.Cleanup(func() { _ = unix.Unmount(filepath.Join(src, "d", "mnt"), unix.MNT_DETACH) })
	require.NoError(t, unix.Mount(filepath.Join(outside, "secret"), filepath.Join(src, "file-mnt"), "", unix.MS_BIND, ""))
	t.Cleanup(func() { _ = unix.Unmount(filepath.Join(src, "file-mnt"), unix.MNT_DETACH) })

	source, err := newSource(t.Context(), src, reading{})
	require.NoError(t, err)
	defer source.Close()
	var paths []string
	for _, e := range source.Manifest() {
		paths = append(paths, e.Path)
	}
	assert.Equal(t, []string{".", "d", "d/own"}, paths, "nothing mounted inside the volume is listed")
	assert.Equal(t, []string{"d/mnt", "file-mnt"}, source.MountPoints())

	dst := filepath.Join(t.TempDir(), "staging")
	sink, err := openSink(dst, source.Manifest(), SinkOptions{})
	require.NoError(t, err)
	defer sink.Close()
	sendAll(t, source, sink)
	assert.NoFileExists(t, filepath.Join(dst, "d", "mnt", "secret"), "the host's data stayed where it was")
	assert.FileExists(t, filepath.Join(dst, "d", "own"))
}
