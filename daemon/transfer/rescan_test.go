package transfer

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestTreeOrderIsWalkOrder(t *testing.T) {
	paths := []string{"a", "a/b", "a/b/c", "a-b", "a.b", "a0", "b", "b/a"}
	shuffled := slices.Clone(paths)
	rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	slices.SortFunc(shuffled, treeOrder)
	assert.Equal(t, paths, shuffled)
}

// randomChange changes one thing under root, and returns the paths it touched as the
// change tracker would log them.
func randomChange(t *testing.T, rng *rand.Rand, root string, n int) []string {
	t.Helper()
	var all []string
	require.NoError(t, filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && p != root {
			rel, _ := filepath.Rel(root, p)
			all = append(all, rel)
		}
		return err
	}))
	pick := func() string {
		if len(all) == 0 {
			return "f0"
		}
		return all[rng.IntN(len(all))]
	}
	dirOf := func(p string) string {
		if fi, err := os.Lstat(filepath.Join(root, p)); err == nil && fi.IsDir() {
			return p
		}
		return filepath.Dir(p)
	}
	switch rng.IntN(8) {
	case 0: // write a file
		p := pick()
		if fi, err := os.Lstat(filepath.Join(root, p)); err == nil && fi.Mode().IsRegular() {
			require.NoError(t, os.WriteFile(filepath.Join(root, p), []byte(fmt.Sprint(rng.Int())), 0o644))
			return []string{p}
		}
	case 1: // a new file
		p := filepath.Join(dirOf(pick()), fmt.Sprintf("new%d", n))
		require.NoError(t, os.WriteFile(filepath.Join(root, p), []byte("n"), 0o640))
		return []string{p}
	case 2: // a new tree of directories
		p := filepath.Join(dirOf(pick()), fmt.Sprintf("d%d", n))
		require.NoError(t, os.MkdirAll(filepath.Join(root, p, "x", "y"), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(root, p, "x", "y", "f"), nil, 0o644))
		return []string{p, p + "/x", p + "/x/y", p + "/x/y/f"}
	case 3: // remove, whole
		p := pick()
		require.NoError(t, os.RemoveAll(filepath.Join(root, p)))
		return []string{p} // its parent logs the name; nothing under it is asked for
	case 4: // rename
		p := pick()
		q := filepath.Join(dirOf(pick()), fmt.Sprintf("r%d", n))
		if err := os.Rename(filepath.Join(root, p), filepath.Join(root, q)); err == nil {
			return []string{p, q}
		}
	case 5: // chmod
		p := pick()
		if fi, err := os.Lstat(filepath.Join(root, p)); err == nil && fi.Mode()&os.ModeSymlink == 0 {
			require.NoError(t, os.Chmod(filepath.Join(root, p), 0o700))
			return []string{p}
		}
	case 6: // xattr
		p := pick()
		_ = unix.Lsetxattr(filepath.Join(root, p), "user.k", []byte(fmt.Sprint(n)), 0)
		return []string{p}
	case 7: // a symlink, and a file made a directory
		p := filepath.Join(dirOf(pick()), fmt.Sprintf("l%d", n))
		require.NoError(t, os.Symlink("../somewhere", filepath.Join(root, p)))
		return []string{p}
	}
	return nil
}

func TestRescanFindsWhatAWalkFinds(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 1))
			root := t.TempDir()
			for i := range 20 {
				d := filepath.Join(root, fmt.Sprintf("d%d", i%4))
				require.NoError(t, os.MkdirAll(d, 0o755))
				require.NoError(t, os.WriteFile(filepath.Join(d, fmt.Sprintf("f%d", i)), []byte{byte(i)}, 0o644))
			}
			ctx := context.Background()
			before, err := walk(ctx, root)
			require.NoError(t, err)
			for round := range 5 {
				var paths []string
				for k := range 1 + rng.IntN(6) {
					paths = append(paths, randomChange(t, rng, root, round*10+k)...)
				}
				got, err := rescan(ctx, root, before, paths)
				require.NoError(t, err)
				want, err := walk(ctx, root)
				require.NoError(t, err)
				require.Equal(t, want.entries, got.entries, "round %d, changed %v", round, paths)
				require.Equal(t, want.ctimes, got.ctimes)
				before = got
			}
		})
	}
}

func TestRescanRefusesHardLinksAndMissesNothingThatWasLogged(t *testing.T) {
	root := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(root, "a"), []byte("a"), 0o644))
	ctx := context.Background()
	before, err := walk(ctx, root)
	require.NoError(t, err)
	require.NoError(t, os.Link(filepath.Join(root, "a"), filepath.Join(root, "b")))
	_, err = rescan(ctx, root, before, []string{"b"})
	assert.ErrorIs(t, err, errRescan, "a file with two names is walked")

	got, err := rescan(ctx, root, before, nil)
	require.NoError(t, err)
	assert.Equal(t, before.entries, got.entries, "nothing logged: the record stands")
}

func TestATreeRecordRoundTrips(t *testing.T) {
	root := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(root, "d"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "d", "f"), []byte("x"), 0o644))
	tr, err := walk(context.Background(), root)
	require.NoError(t, err)
	require.NoError(t, saveTree(root, treeRecord{tree: tr, log: "l", seq: 7}))
	got, ok := loadTree(root)
	require.True(t, ok)
	assert.Equal(t, "l", got.log)
	assert.Equal(t, uint64(7), got.seq)
	assert.Equal(t, tr.entries, got.tree.entries)
	assert.Equal(t, tr.ctimes, got.tree.ctimes)

	moved := filepath.Join(t.TempDir(), "other")
	require.NoError(t, os.Mkdir(moved, 0o755))
	require.NoError(t, os.Rename(TreePath(root), TreePath(moved)))
	_, ok = loadTree(moved)
	assert.False(t, ok, "a record beside another tree is refused")
	require.NoError(t, os.Rename(TreePath(moved), TreePath(root)))
	_, ok = loadTree(root)
	assert.True(t, ok)

	require.NoError(t, os.WriteFile(TreePath(root), []byte(treeMagic+"junk"), 0o600))
	_, ok = loadTree(root)
	assert.False(t, ok, "a damaged record is none")
	require.NoError(t, DropTree(root))
	_, ok = loadTree(root)
	assert.False(t, ok)
}
