package transfer

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// openBytes opens an archive held in memory, as Unpack wants it.
func openBytes(b []byte) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}

// gnuTar archives dir with GNU tar, keeping what it can: owners, xattrs, holes.
func gnuTar(t *testing.T, dir string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "a.tar")
	cmd := exec.Command("tar", "--xattrs", "--xattrs-include=*", "--sparse", "--numeric-owner", "--format=posix", "-C", dir, "-cf", out, ".")
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "tar: %s", b)
	a, err := os.ReadFile(out)
	require.NoError(t, err)
	return a
}

// A tree archived by GNU tar unpacks as it was, and its root hash is the one its owner
// computes when it sends it.
func TestUnpackKeepsWhatTheArchiveHolds(t *testing.T) {
	src := fidelityTree(t)
	staging := filepath.Join(t.TempDir(), "staging")
	res, err := Unpack(context.Background(), staging, openBytes(gnuTar(t, src)), UnpackOptions{Sink: SinkOptions{AllowPrivileged: true}})
	require.NoError(t, err)

	want, err := walkEntries(src)
	require.NoError(t, err)
	got, err := walkEntries(staging)
	require.NoError(t, err)
	for _, es := range [][]entry{want, got} { // tar keeps no order of attributes: compare them sorted
		for _, e := range es {
			slices.SortFunc(e.Xattrs, func(a, b xattr) int { return strings.Compare(a.Name, b.Name) })
		}
	}
	assert.Equal(t, want, got, "owners, modes, nanosecond times, xattrs and ACLs, links, the fifo and the hole arrived")
	assert.Equal(t, 4, res.Files, "a.txt, zero, big.bin, sparse: the hardlink names a.txt")

	var st unix.Stat_t
	require.NoError(t, unix.Stat(filepath.Join(staging, "sparse"), &st))
	assert.Less(t, st.Blocks*512, int64(1<<20), "the 64 MiB sparse file stays sparse")

	source, err := newSource(t.Context(), staging, reading{})
	require.NoError(t, err)
	defer source.Close()
	require.NoError(t, source.Want(nil))
	root, err := source.RootHash()
	require.NoError(t, err)
	assert.Equal(t, root, res.RootHash, "the unpacked tree's root hash is the one its owner sends it with")
}

// A second unpack into the same staging writes nothing: it resumes from the files the
// first one finished.
func TestUnpackResumesFromTheFilesItFinished(t *testing.T) {
	src := fidelityTree(t)
	archive := gnuTar(t, src)
	staging := filepath.Join(t.TempDir(), "staging")
	first, err := Unpack(context.Background(), staging, openBytes(archive), UnpackOptions{})
	require.NoError(t, err)
	assert.Positive(t, first.Written)
	require.NoError(t, os.Remove(filepath.Join(staging, "big.bin")))
	again, err := Unpack(context.Background(), staging, openBytes(archive), UnpackOptions{})
	require.NoError(t, err)
	assert.Equal(t, 1, again.Files, "only the file that went is unpacked again")
	assert.Equal(t, int64(3<<20+17), again.Written)
	assert.Equal(t, first.RootHash, again.RootHash)
}

// A setuid file arrives without its bit in a volume that does not allow privileged
// content, as it would from another node.
func TestUnpackStripsPrivilegedContent(t *testing.T) {
	a := buildTar(t, []tar.Header{{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755}, {Name: "bin/su", Typeflag: tar.TypeReg, Mode: 0o4755, Size: 3}})
	staging := filepath.Join(t.TempDir(), "staging")
	res, err := Unpack(context.Background(), staging, openBytes(a), UnpackOptions{})
	require.NoError(t, err)
	assert.Equal(t, uint32(0o755), modeOf(t, filepath.Join(staging, "bin", "su")))
	assert.Equal(t, Stripped{Count: 1, Paths: []string{"bin/su"}}, res.Stripped)
}

// Parents an archive does not list are made; an archive's "./" prefixes go.
func TestUnpackMakesTheDirectoriesAnArchiveImplies(t *testing.T) {
	a := buildTar(t, []tar.Header{{Name: "./deep/er/file", Typeflag: tar.TypeReg, Mode: 0o600, Size: 3}, {Name: "./deep/", Typeflag: tar.TypeDir, Mode: 0o700}})
	staging := filepath.Join(t.TempDir(), "staging")
	_, err := Unpack(context.Background(), staging, openBytes(a), UnpackOptions{Now: time.Unix(1_700_000_000, 0)})
	require.NoError(t, err)
	b, err := os.ReadFile(filepath.Join(staging, "deep", "er", "file"))
	require.NoError(t, err)
	assert.Equal(t, "xxx", string(b))
	assert.Equal(t, uint32(0o700), modeOf(t, filepath.Join(staging, "deep")), "the later header of a directory wins")
	fi, err := os.Stat(filepath.Join(staging, "deep", "er"))
	require.NoError(t, err)
	assert.Equal(t, time.Unix(1_700_000_000, 0), fi.ModTime(), "an implied directory has the unpack's time")
}

func TestHostileArchivesAreRefusedNamingTheEntry(t *testing.T) {
	file := func(name string) tar.Header {
		return tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: 3}
	}
	for name, tc := range map[string]struct {
		headers []tar.Header
		raw     []byte
		opts    UnpackOptions
		is      error
		why     string
	}{
		"dot-dot":              {headers: []tar.Header{file("../escape")}, is: ErrHostile, why: `"../escape"`},
		"dot-dot inside":       {headers: []tar.Header{file("a/../../escape")}, is: ErrHostile, why: `"a/../../escape"`},
		"absolute":             {headers: []tar.Header{file("/etc/cron.d/x")}, is: ErrHostile, why: `"/etc/cron.d/x"`},
		"symlink then write":   {headers: []tar.Header{{Name: "a", Typeflag: tar.TypeSymlink, Linkname: "../outside"}, file("a/secret")}, is: ErrHostile, why: `archive entry "a/secret" is inside "a", a symlink`},
		"symlink after a file": {headers: []tar.Header{file("a/x"), {Name: "a", Typeflag: tar.TypeSymlink, Linkname: "/etc"}}, is: ErrHostile, why: `"a" is a symlink, but entries before it are inside it`},
		"hardlink out":         {headers: []tar.Header{{Name: "h", Typeflag: tar.TypeLink, Linkname: "../outside/secret"}}, is: ErrHostile, why: `"h" is a hardlink to "../outside/secret"`},
		"hardlink absolute":    {headers: []tar.Header{{Name: "h", Typeflag: tar.TypeLink, Linkname: "/etc/shadow"}}, is: ErrHostile, why: `"h" is a hardlink to "/etc/shadow"`},
		"hardlink to nothing":  {headers: []tar.Header{{Name: "h", Typeflag: tar.TypeLink, Linkname: "f"}}, is: ErrHostile, why: `"h" is a hardlink to "f", which is not a file listed before it`},
		"device":               {headers: []tar.Header{{Name: "dev/sda", Typeflag: tar.TypeBlock, Mode: 0o660, Devmajor: 8}}, is: ErrHostile, why: `"dev/sda" is a device node`},
		"listed twice":         {headers: []tar.Header{file("f"), file("f")}, is: ErrHostile, why: `"f" is listed twice`},
		"too many entries":     {headers: []tar.Header{file("a"), file("b"), file("c")}, opts: UnpackOptions{MaxEntries: 3}, is: ErrHostile, why: "more than 3 entries"},
		"over the limit":       {headers: []tar.Header{{Name: "big", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1 << 40}}, opts: UnpackOptions{Sink: SinkOptions{MaxBytes: 1 << 30}}, is: ErrHostile, why: "above the volume's limit"},
		"not tar":              {raw: bytes.Repeat([]byte("not a tar archive\n"), 100), is: ErrArchive},
	} {
		t.Run(name, func(t *testing.T) {
			staging, _ := hostileSetup(t)
			a := tc.raw
			if a == nil {
				a = buildTar(t, tc.headers)
			}
			_, err := Unpack(context.Background(), staging, openBytes(a), tc.opts)
			require.ErrorIs(t, err, tc.is)
			assert.Contains(t, err.Error(), tc.why)
			_, serr := os.Stat(staging)
			assert.ErrorIs(t, serr, os.ErrNotExist, "nothing was written")
		})
	}
}

// A big file declared in a small archive (what a gzip or zstd bomb unpacks to) is refused
// by its declared size before a byte of it is written, and before the archive is read
// whole.
func TestAnArchiveLargerThanTheDiskIsRefusedBeforeWriting(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: "bomb", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1 << 50}))
	staging, _ := hostileSetup(t)
	// The archive ends inside the file's content: the unpack must not read that far.
	_, err := Unpack(context.Background(), staging, openBytes(buf.Bytes()), UnpackOptions{})
	require.ErrorIs(t, err, ErrTooBig, "refused for its size, not for the missing bytes")
	_, serr := os.Stat(staging)
	assert.ErrorIs(t, serr, os.ErrNotExist)
}

// buildTar writes an archive of headers, each file's content "xxx…" of its size.
func buildTar(t *testing.T, headers []tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range headers {
		h.ModTime = time.Unix(1_700_000_000, 0)
		require.NoError(t, tw.WriteHeader(&h))
		if h.Typeflag == tar.TypeReg && h.Size < 1<<20 {
			_, err := tw.Write(bytes.Repeat([]byte("x"), int(h.Size)))
			require.NoError(t, err)
		}
	}
	if err := tw.Close(); err != nil && !errors.Is(err, tar.ErrWriteTooLong) {
		// A file declared larger than what was written is fine for the tests that want it.
		t.Logf("tar: %v", err)
	}
	return buf.Bytes()
}
