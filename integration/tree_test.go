package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// treeOf describes every entry under dir, by path, with what a copy must keep: kind,
// mode, numeric owner, nanosecond mtime (not a directory's: its entries changing moves
// it), size and content hash, symlink target, extended attributes, and which earlier
// path a hardlink shares its inode with. Two trees are copies of each other when their
// descriptions are equal.
func treeOf(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	inodes := map[uint64]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			return err
		}
		desc := fmt.Sprintf("mode=%o uid=%d gid=%d", st.Mode, st.Uid, st.Gid)
		switch {
		case d.Type().IsRegular():
			if first, ok := inodes[st.Ino]; ok && st.Nlink > 1 {
				desc += " hardlink=" + first
				break
			}
			inodes[st.Ino] = rel
			desc += fmt.Sprintf(" mtime=%d size=%d sha256=%s", st.Mtim.Nano(), st.Size, fileHash(t, p))
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" mtime=%d target=%s", st.Mtim.Nano(), target)
		}
		desc += xattrsOf(p)
		out[rel] = desc
		return nil
	})
	require.NoError(t, err)
	return out
}

func fileHash(t testing.TB, p string) string {
	f, err := os.Open(p)
	require.NoError(t, err)
	defer f.Close()
	h := sha256.New()
	_, err = io.Copy(h, f)
	require.NoError(t, err)
	return hex.EncodeToString(h.Sum(nil))
}

// xattrsOf lists a file's extended attributes and values, sorted (not following a
// symlink).
func xattrsOf(p string) string {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil || n == 0 {
		return ""
	}
	names := strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00")
	slices.Sort(names)
	var b strings.Builder
	for _, name := range names {
		val := make([]byte, 64<<10)
		m, err := unix.Lgetxattr(p, name, val)
		if err != nil {
			continue
		}
		fmt.Fprintf(&b, " xattr:%s=%x", name, val[:m])
	}
	return b.String()
}

// allocated is how many bytes of disk the file at p takes: less than its size if it has
// holes.
func allocated(t testing.TB, p string) int64 {
	t.Helper()
	var st syscall.Stat_t
	require.NoError(t, syscall.Stat(p, &st))
	return st.Blocks * 512
}
