package transfer

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// tlsPair returns n connected pairs of mutual-TLS 1.3 connections between node-a (the
// sender, server side) and node-b.
func tlsPairs(t *testing.T, n int) (server, client []net.Conn) {
	t.Helper()
	ids := testIdentities(t, "node-a", "node-b")
	l, err := tls.Listen("tcp", "127.0.0.1:0", ids["node-a"].ServerConfig(nil))
	require.NoError(t, err)
	defer l.Close()
	for range n {
		accepted := make(chan net.Conn, 1)
		go func() {
			c, err := l.Accept()
			if err == nil {
				_ = c.(*tls.Conn).Handshake()
			}
			accepted <- c
		}()
		c, err := tls.Dial("tcp", l.Addr().String(), ids["node-b"].ClientConfig("node-a"))
		require.NoError(t, err)
		s := <-accepted
		require.NotNil(t, s)
		server, client = append(server, s), append(client, c)
		t.Cleanup(func() { c.Close(); s.Close() })
	}
	return server, client
}

// openSink reads the staging dir, then makes a sink there for the manifest entries, as a
// pull does once the sender has answered. It walks staging, as a pull does when staging
// has no record: the tests that use it put things there by hand.
func openSink(dir string, entries []entry, opts SinkOptions) (*sink, error) {
	st, err := readStaging(context.Background(), dir, false)
	if err != nil {
		return nil, err
	}
	return newSink(dir, entries, st, opts)
}

// move sends src to staging dst over streams parallel mutual-TLS connections and returns
// the sink (finished) and source.
func move(t *testing.T, src, dst string, streams int) (*sink, *source) {
	t.Helper()
	source, err := newSource(t.Context(), src, reading{})
	require.NoError(t, err)
	t.Cleanup(func() { source.Close() })
	// The manifest crosses the wire in its encoding.
	manifest, err := decodeManifest(encodeManifest(source.Manifest()))
	require.NoError(t, err)
	// Full fidelity: the tree holds a setuid file (policy_test.go covers the default).
	sink, err := openSink(dst, manifest, SinkOptions{AllowPrivileged: true})
	require.NoError(t, err)
	t.Cleanup(func() { sink.Close() })

	sendStreams(t, source, sink, streams)
	return sink, source
}

// ends opens a source on src and a sink on dst for its manifest with opts, both closed
// when the test ends.
func ends(t *testing.T, src, dst string, opts SinkOptions) (*source, *sink) {
	t.Helper()
	source, err := newSource(t.Context(), src, reading{})
	require.NoError(t, err)
	t.Cleanup(func() { source.Close() })
	sink, err := openSink(dst, source.Manifest(), opts)
	require.NoError(t, err)
	t.Cleanup(func() { sink.Close() })
	return source, sink
}

// sendAll sends what sink wants of source on one mutual-TLS stream and finishes.
func sendAll(t *testing.T, source *source, sink *sink) { t.Helper(); sendStreams(t, source, sink, 1) }

// sendStreams sends what sink wants of source over streams parallel mutual-TLS
// connections, finishes, and checks that both ends agree on the root hash.
func sendStreams(t *testing.T, source *source, sink *sink, streams int) {
	t.Helper()
	require.NoError(t, source.Want(sink.Wanted()))
	server, client := tlsPairs(t, streams)
	var wg sync.WaitGroup
	for i := range streams {
		wg.Add(2)
		go func() { defer wg.Done(); assert.NoError(t, source.Send(context.Background(), server[i])) }()
		go func() { defer wg.Done(); assert.NoError(t, sink.Receive(client[i])) }()
	}
	wg.Wait()
	root, err := sink.Finish(t.Context())
	require.NoError(t, err)
	want, err := source.RootHash()
	require.NoError(t, err)
	assert.Equal(t, want, root, "both ends agree on the tree")
}

// fidelityTree builds a tree with everything the transfer must keep.
func fidelityTree(t *testing.T) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "src")
	must := func(err error) { t.Helper(); require.NoError(t, err) }
	must(os.MkdirAll(filepath.Join(src, "dir", "empty"), 0o755))
	must(os.WriteFile(filepath.Join(src, "dir", "a.txt"), []byte("hello, drayage\n"), 0o644))
	must(os.WriteFile(filepath.Join(src, "zero"), nil, 0o600))
	big := make([]byte, 3<<20+17)
	_, _ = rand.Read(big)
	must(os.WriteFile(filepath.Join(src, "big.bin"), big, 0o640))
	must(os.Symlink("a.txt", filepath.Join(src, "dir", "rel-link")))
	must(os.Symlink("/etc/passwd", filepath.Join(src, "abs-link")))
	must(os.Link(filepath.Join(src, "dir", "a.txt"), filepath.Join(src, "hard")))
	must(unix.Mkfifo(filepath.Join(src, "pipe"), 0o620))
	// A 64 MiB file with 4 KiB of data at each end: the rest is a hole.
	f, err := os.Create(filepath.Join(src, "sparse"))
	must(err)
	_, err = f.WriteAt(big[:4096], 0)
	must(err)
	_, err = f.WriteAt(big[:4096], 64<<20-4096)
	must(err)
	must(f.Close())
	// Owners, setuid/sticky bits, xattrs, a POSIX ACL.
	must(os.Chown(filepath.Join(src, "dir", "a.txt"), 1001, 1002))
	must(unix.Chmod(filepath.Join(src, "dir", "a.txt"), 0o4755)) // os.Chmod would drop the setuid bit
	must(os.Chown(filepath.Join(src, "dir"), 1000, 1000))
	must(unix.Chmod(filepath.Join(src, "dir", "empty"), 0o1777))
	must(unix.Lchown(filepath.Join(src, "abs-link"), 1003, 1003))
	must(unix.Setxattr(filepath.Join(src, "big.bin"), "user.color", []byte("blue"), 0))
	must(unix.Setxattr(filepath.Join(src, "big.bin"), "system.posix_acl_access", posixACL(1000), 0))
	// Nanosecond times, set last (children before parents).
	for i, p := range []string{"dir/a.txt", "big.bin", "zero", "sparse", "pipe", "dir/empty", "dir", "."} {
		ts := time.Unix(1_700_000_000+int64(i), 123_456_789+int64(i))
		must(unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(src, p), []unix.Timespec{unix.NsecToTimespec(ts.UnixNano()), unix.NsecToTimespec(ts.UnixNano())}, 0))
	}
	lts := unix.NsecToTimespec(time.Unix(1_600_000_000, 42).UnixNano())
	must(unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(src, "abs-link"), []unix.Timespec{lts, lts}, unix.AT_SYMLINK_NOFOLLOW))
	return src
}

// posixACL encodes an access ACL: owner rw, user uid r, group r, mask r, other none.
func posixACL(uid uint32) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range [][3]uint32{{0x01, 6, 0xffffffff}, {0x02, 4, uid}, {0x04, 4, 0xffffffff}, {0x10, 4, 0xffffffff}, {0x20, 0, 0xffffffff}} {
		b = binary.LittleEndian.AppendUint16(b, uint16(e[0]))
		b = binary.LittleEndian.AppendUint16(b, uint16(e[1]))
		b = binary.LittleEndian.AppendUint32(b, e[2])
	}
	return b
}

func TestRoundTripKeepsEverythingOverMutualTLS(t *testing.T) {
	src := fidelityTree(t)
	dst := filepath.Join(t.TempDir(), "staging")
	sink, _ := move(t, src, dst, 4)
	assert.Len(t, sink.Wanted(), 4, "a.txt, zero, big.bin, sparse: the hardlink is not sent twice")

	want, err := walkEntries(src)
	require.NoError(t, err)
	got, err := walkEntries(dst)
	require.NoError(t, err)
	assert.Equal(t, want, got, "owner, mode, times, xattrs, link targets: the trees are alike")

	same := func(a, b string) {
		var sa, sb unix.Stat_t
		require.NoError(t, unix.Lstat(filepath.Join(dst, a), &sa))
		require.NoError(t, unix.Lstat(filepath.Join(dst, b), &sb))
		assert.Equal(t, sa.Ino, sb.Ino, "%s and %s are one file", a, b)
	}
	same("hard", "dir/a.txt")
	for _, p := range []string{"big.bin", "dir/a.txt", "sparse"} {
		a, err := os.ReadFile(filepath.Join(src, p))
		require.NoError(t, err)
		b, err := os.ReadFile(filepath.Join(dst, p))
		require.NoError(t, err)
		assert.Equal(t, a, b, p)
	}
	var st unix.Stat_t
	require.NoError(t, unix.Stat(filepath.Join(dst, "sparse"), &st))
	assert.Less(t, st.Blocks*512, int64(1<<20), "the 64 MiB sparse file keeps its hole")
	link, err := os.Readlink(filepath.Join(dst, "abs-link"))
	require.NoError(t, err)
	assert.Equal(t, "/etc/passwd", link, "a symlink is copied, never followed")
}

func TestDeltaSendsOnlyWhatChanged(t *testing.T) {
	src := fidelityTree(t)
	dst := filepath.Join(t.TempDir(), "staging")
	move(t, src, dst, 2)

	// Change one file, add one, remove one; touch nothing else.
	require.NoError(t, os.WriteFile(filepath.Join(src, "zero"), []byte("now with content"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(src, "dir", "new"), []byte("new file"), 0o644))
	require.NoError(t, os.Remove(filepath.Join(src, "big.bin")))
	require.NoError(t, DropTree(dst)) // what a pull does before it changes staging
	require.NoError(t, os.WriteFile(filepath.Join(dst, ".drayage-tmp-9"), []byte("left by a crash"), 0o600))

	sink, source := move(t, src, dst, 2)
	assert.Len(t, sink.Wanted(), 2, "only the changed and the new file")
	assert.Equal(t, int64(len("now with content")+len("new file")), source.Bytes())
	assert.NoFileExists(t, filepath.Join(dst, "big.bin"), "what is gone at the source goes")
	assert.NoFileExists(t, filepath.Join(dst, ".drayage-tmp-9"))
	want, err := walkEntries(src)
	require.NoError(t, err)
	got, err := walkEntries(dst)
	require.NoError(t, err)
	assert.Equal(t, want, got)

	// Again with nothing changed: a manifest exchange, no content.
	sink, source = move(t, src, dst, 2)
	assert.Empty(t, sink.Wanted())
	assert.Zero(t, source.Bytes())
}
