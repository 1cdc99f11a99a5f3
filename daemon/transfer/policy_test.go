package transfer

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// capNetRaw is a file capability granting CAP_NET_RAW (struct vfs_cap_data, revision 2).
func capNetRaw() []byte {
	b := make([]byte, 20)
	binary.LittleEndian.PutUint32(b[0:], 0x02000000|1) // revision 2, effective
	binary.LittleEndian.PutUint32(b[4:], 1<<13)        // permitted: CAP_NET_RAW
	return b
}

// privilegedTree builds a tree with every kind of privileged content but devices, and
// a setgid directory (which grants nothing).
func privilegedTree(t *testing.T) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "src")
	must := func(err error) { t.Helper(); require.NoError(t, err) }
	must(os.MkdirAll(filepath.Join(src, "shared"), 0o755))
	must(os.Chmod(filepath.Join(src, "shared"), 0o2775|os.ModeSetgid))
	for name, mode := range map[string]os.FileMode{"su": 0o755 | os.ModeSetuid, "sg": 0o755 | os.ModeSetgid, "ping": 0o755, "ovl": 0o644, "plain": 0o644} {
		p := filepath.Join(src, name)
		must(os.WriteFile(p, []byte(name), 0o600))
		must(os.Chmod(p, mode))
	}
	must(unix.Setxattr(filepath.Join(src, "ping"), capabilityXattr, capNetRaw(), 0))
	must(unix.Setxattr(filepath.Join(src, "ovl"), "trusted.overlay.opaque", []byte("y"), 0))
	must(unix.Setxattr(filepath.Join(src, "plain"), "user.note", []byte("kept"), 0))
	return src
}

func modeOf(t *testing.T, p string) uint32 {
	t.Helper()
	var st unix.Stat_t
	require.NoError(t, unix.Lstat(p, &st))
	return st.Mode & 0o7777
}

func hasXattr(p, name string) bool {
	_, err := unix.Lgetxattr(p, name, nil)
	return err == nil
}

func TestPrivilegedContentIsStrippedUnlessTheVolumeAllowsIt(t *testing.T) {
	src := privilegedTree(t)
	dst := filepath.Join(t.TempDir(), "staging")
	source, sink := ends(t, src, dst, SinkOptions{})
	sendAll(t, source, sink)

	assert.Equal(t, uint32(0o755), modeOf(t, filepath.Join(dst, "su")), "the setuid bit is stripped")
	assert.Equal(t, uint32(0o755), modeOf(t, filepath.Join(dst, "sg")), "the setgid bit of a file is stripped")
	assert.Equal(t, uint32(0o2775), modeOf(t, filepath.Join(dst, "shared")), "a setgid directory grants nothing and is kept")
	assert.False(t, hasXattr(filepath.Join(dst, "ping"), capabilityXattr), "the file capability is stripped")
	assert.False(t, hasXattr(filepath.Join(dst, "ovl"), "trusted.overlay.opaque"), "the trusted.* attribute is stripped")
	assert.True(t, hasXattr(filepath.Join(dst, "plain"), "user.note"), "other attributes arrive")
	got := sink.Stripped()
	assert.Equal(t, 4, got.Count)
	assert.ElementsMatch(t, []string{"ovl", "ping", "sg", "su"}, got.Paths, "the report names each file")
}

func TestPrivilegedContentArrivesWhenTheVolumeAllowsIt(t *testing.T) {
	src := privilegedTree(t)
	require.NoError(t, unix.Mknod(filepath.Join(src, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	dst := filepath.Join(t.TempDir(), "staging")
	source, sink := ends(t, src, dst, SinkOptions{AllowPrivileged: true})
	sendAll(t, source, sink)
	want, err := walkEntries(src)
	require.NoError(t, err)
	got, err := walkEntries(dst)
	require.NoError(t, err)
	assert.Equal(t, want, got, "setuid, setgid, capabilities, trusted.* attributes and devices all arrive")
	assert.Zero(t, sink.Stripped().Count)

	// Without the option, the device is refused by name before anything is written.
	_, err = openSink(filepath.Join(t.TempDir(), "staging"), source.Manifest(), SinkOptions{})
	require.ErrorIs(t, err, ErrHostile)
	assert.Contains(t, err.Error(), `"null" is a device node; devices move only with a volume created with -o allow-privileged=true`)
}

func TestACapabilityLeftInStagingIsRemoved(t *testing.T) {
	src := privilegedTree(t)
	dst := filepath.Join(t.TempDir(), "staging")
	source, sink := ends(t, src, dst, SinkOptions{})
	sendAll(t, source, sink)
	sink.Close() // its stored hashes are written as it closes
	// An older copy in staging carries a capability the manifest does not list; the
	// file's content and times are unchanged, so nothing of it is sent again.
	require.NoError(t, unix.Setxattr(filepath.Join(dst, "plain"), capabilityXattr, capNetRaw(), 0))
	source2, sink2 := ends(t, src, dst, SinkOptions{})
	assert.Empty(t, sink2.Wanted())
	sendAll(t, source2, sink2)
	assert.False(t, hasXattr(filepath.Join(dst, "plain"), capabilityXattr), "the stray capability is gone")
	assert.True(t, hasXattr(filepath.Join(dst, "plain"), "user.note"))
}
