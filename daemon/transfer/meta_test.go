package transfer

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// An old copy in staging can have a setgid directory and a default ACL, which the kernel
// would pass on to every file created there; what arrives must still look exactly as
// listed, with owner and mode set only where they differ.
func TestFilesTakeNothingFromTheirStagingDirectory(t *testing.T) {
	src := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(src, "d"), 0o755))
	mine := filepath.Join(src, "d", "mine")
	theirs := filepath.Join(src, "d", "theirs")
	open := filepath.Join(src, "d", "open")
	require.NoError(t, os.WriteFile(mine, []byte("ours"), 0o644))
	require.NoError(t, os.WriteFile(theirs, []byte("someone else's"), 0o600))
	require.NoError(t, os.Chown(theirs, 1001, 1002))
	require.NoError(t, os.WriteFile(open, []byte("for all"), 0o644))
	require.NoError(t, os.Chmod(open, 0o777)) // beyond the umask: must be set by hand
	require.NoError(t, os.Chmod(src, 0o755))

	dst := filepath.Join(t.TempDir(), "staging")
	require.NoError(t, os.MkdirAll(filepath.Join(dst, "d"), 0o755))
	require.NoError(t, os.Chown(filepath.Join(dst, "d"), 0, 4242))
	require.NoError(t, unix.Chmod(filepath.Join(dst, "d"), 0o2775))                           // os.Chmod drops 0o7000
	require.NoError(t, unix.Setxattr(filepath.Join(dst, "d"), aclDefault, posixACL(1000), 0)) // handed to new files
	require.NoError(t, unix.Setxattr(filepath.Join(dst, "d"), "user.stale", []byte("left over"), 0))

	move(t, src, dst, 2)
	want, err := walkEntries(src)
	require.NoError(t, err)
	got, err := walkEntries(dst)
	require.NoError(t, err)
	assert.Equal(t, want, got, "no inherited group, mode, ACL, or leftover attribute")
}

// A file is written in place: one left half-written by a killed attempt has the wrong
// times, so it is sent again, and one with another hard link in the old copy is replaced,
// never written through.
func TestReceivingReplacesWhatAnOldCopyLeft(t *testing.T) {
	src := t.TempDir()
	for name, content := range map[string]string{"a": "new a", "b": "new b", "half": "all of it"} {
		require.NoError(t, os.WriteFile(filepath.Join(src, name), []byte(content), 0o644))
	}
	dst := filepath.Join(t.TempDir(), "staging")
	require.NoError(t, os.MkdirAll(dst, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(dst, "a"), []byte("old a"), 0o644))
	require.NoError(t, os.Link(filepath.Join(dst, "a"), filepath.Join(dst, "b")))
	require.NoError(t, os.WriteFile(filepath.Join(dst, "half"), []byte("all of"), 0o644))
	srcHalf, err := os.Stat(filepath.Join(src, "half"))
	require.NoError(t, err)
	// The same size as the source, but a write's own time, not the source's.
	require.NoError(t, os.WriteFile(filepath.Join(dst, "half"), []byte("all of xx"), 0o644))
	require.NoError(t, os.Chtimes(filepath.Join(dst, "half"), time.Now(), srcHalf.ModTime().Add(time.Nanosecond)))

	sink, _ := move(t, src, dst, 1)
	assert.Len(t, sink.Wanted(), 3)
	for name, content := range map[string]string{"a": "new a", "b": "new b", "half": "all of it"} {
		b, err := os.ReadFile(filepath.Join(dst, name))
		require.NoError(t, err)
		assert.Equal(t, content, string(b), name)
	}
}

// A changed file of an old copy is written over in place when it has no other link: it
// ends with the new content, length, holes, owner, mode and attributes, none of the old.
func TestChangedFilesAreWrittenOverInPlace(t *testing.T) {
	src := t.TempDir()
	dst := filepath.Join(t.TempDir(), "staging")
	require.NoError(t, os.MkdirAll(dst, 0o700))
	old := make([]byte, 256<<10)
	_, _ = rand.Read(old)
	// shrinks: was long, setuid, someone else's and with an attribute.
	require.NoError(t, os.WriteFile(filepath.Join(dst, "shrinks"), old, 0o644))
	require.NoError(t, os.Chown(filepath.Join(dst, "shrinks"), 1001, 1002))
	require.NoError(t, unix.Chmod(filepath.Join(dst, "shrinks"), 0o4755))
	require.NoError(t, unix.Setxattr(filepath.Join(dst, "shrinks"), "user.old", []byte("stale"), 0))
	require.NoError(t, os.WriteFile(filepath.Join(src, "shrinks"), []byte("new"), 0o640))
	// holey: all data before, a hole in the middle and at the end now.
	require.NoError(t, os.WriteFile(filepath.Join(dst, "holey"), old, 0o644))
	f, err := os.Create(filepath.Join(src, "holey"))
	require.NoError(t, err)
	_, err = f.WriteAt(old[:4096], 0)
	require.NoError(t, err)
	_, err = f.WriteAt(old[:4096], 128<<10)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(int64(len(old))))
	require.NoError(t, f.Close())
	// grows.
	require.NoError(t, os.WriteFile(filepath.Join(dst, "grows"), []byte("old"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(src, "grows"), old, 0o644))
	for _, name := range []string{"shrinks", "holey", "grows"} { // an older copy
		hourAgo := time.Now().Add(-time.Hour)
		require.NoError(t, os.Chtimes(filepath.Join(dst, name), hourAgo, hourAgo))
	}
	var before unix.Stat_t
	require.NoError(t, unix.Stat(filepath.Join(dst, "shrinks"), &before))

	sink, _ := move(t, src, dst, 2)
	assert.Len(t, sink.Wanted(), 3)
	want, err := walkEntries(src)
	require.NoError(t, err)
	got, err := walkEntries(dst)
	require.NoError(t, err)
	assert.Equal(t, want, got, "owner, mode, times and attributes are the new file's")
	for _, name := range []string{"shrinks", "holey", "grows"} {
		a, err := os.ReadFile(filepath.Join(src, name))
		require.NoError(t, err)
		b, err := os.ReadFile(filepath.Join(dst, name))
		require.NoError(t, err)
		assert.True(t, bytes.Equal(a, b), "%s has its new content", name)
	}
	var after, holey unix.Stat_t
	require.NoError(t, unix.Stat(filepath.Join(dst, "shrinks"), &after))
	assert.Equal(t, before.Ino, after.Ino, "the file was written over, not replaced")
	require.NoError(t, unix.Stat(filepath.Join(dst, "holey"), &holey))
	assert.LessOrEqual(t, holey.Blocks*512, int64(64<<10), "the old data became holes")
}

// On a delta, a directory that gained or lost nothing and already looks as listed is not
// touched; one that did gets its listed times back after the change.
func TestDeltaLeavesUnchangedDirectoriesAlone(t *testing.T) {
	src := t.TempDir()
	for _, d := range []string{"same", "grows"} {
		require.NoError(t, os.Mkdir(filepath.Join(src, d), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(src, d, "f"), []byte("v1"), 0o644))
	}
	dst := filepath.Join(t.TempDir(), "staging")
	move(t, src, dst, 1)
	var before unix.Stat_t
	require.NoError(t, unix.Stat(filepath.Join(dst, "same"), &before))

	time.Sleep(20 * time.Millisecond) // a ctime the kernel's clock can tell apart
	require.NoError(t, os.WriteFile(filepath.Join(src, "same", "f"), []byte("v2, longer"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(src, "grows", "g"), []byte("new"), 0o644))
	move(t, src, dst, 1)
	var after unix.Stat_t
	require.NoError(t, unix.Stat(filepath.Join(dst, "same"), &after))
	assert.Equal(t, before.Ctim, after.Ctim, "the directory of a file written over is left alone")
	want, err := walkEntries(src)
	require.NoError(t, err)
	got, err := walkEntries(dst)
	require.NoError(t, err)
	assert.Equal(t, want, got, "the directory that gained a file has its listed time")
}
