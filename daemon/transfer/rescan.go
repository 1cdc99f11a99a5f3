package transfer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// errRescan means a tree can't be brought up to date path by path: it has hard links
// (which name one file from several places) or mount points, or a change made one. The
// caller walks it instead.
var errRescan = errors.New("the tree must be walked again")

// rescan brings t, an earlier walk of the tree at root, up to date: paths are every
// path of it changed since (relative, "." for the root), as the change tracker logged
// them. Each is read again, with the directories above it, whose times changed with it;
// one that is gone goes, with everything under it; a directory new at a path is walked
// whole. What comes out is what walk would find now, for a small fraction of its reads:
// the cost of a sync of k changed files among a million is k reads, not a million.
func rescan(ctx context.Context, root string, t tree, paths []string) (tree, error) {
	if t.links > 0 || len(t.mounts) > 0 || len(t.entries) == 0 {
		return tree{}, errRescan
	}
	at := make(map[string]int, len(t.entries))
	for i, e := range t.entries {
		at[e.Path] = i
	}
	check := map[string]bool{}
	for _, p := range paths {
		if p = path.Clean(p); p == ".." || strings.HasPrefix(p, "../") || path.IsAbs(p) {
			continue
		}
		for ; p != "."; p = path.Dir(p) {
			check[p] = true
		}
		check["."] = true
	}
	order := slices.SortedFunc(func(yield func(string) bool) {
		for p := range check {
			if !yield(p) {
				return
			}
		}
	}, treeOrder)

	r, err := os.OpenRoot(root)
	if err != nil {
		return tree{}, err
	}
	defer r.Close()
	dirs := newDirCache(r, false)
	defer dirs.close()
	top, release, err := dirs.open(".")
	if err != nil {
		return tree{}, err
	}
	st, mnt, err := statAt(top.fd, "", unix.AT_EMPTY_PATH)
	release()
	if err != nil {
		return tree{}, fmt.Errorf("stat %s: %w", root, err)
	}
	w := &walker{ctx: ctx, root: root, place: placeOf(&st, mnt)} // a record does not keep it
	buf := make([]byte, xattrBuf)

	gone := make([]bool, len(t.entries))
	drop := func(i int) { // entry i and everything under it
		gone[i] = true
		if t.entries[i].Kind != kindDir {
			return
		}
		prefix := t.entries[i].Path + "/"
		if i == 0 {
			prefix = ""
		}
		for j := i + 1; j < len(t.entries) && strings.HasPrefix(t.entries[j].Path, prefix); j++ {
			gone[j] = true
		}
	}
	changed := map[int]walkItem{}
	var added []walkItem
	whole := map[string]bool{} // directories walked whole here
	read := 0
	// now is what each path checked is now (0: nothing), parents before children.
	now := map[string]kind{}
	for _, p := range order {
		if err := ctx.Err(); err != nil {
			return tree{}, err
		}
		i, had := at[p]
		if had && gone[i] || !had && under(p, whole) {
			continue // under a directory removed or walked whole here
		}
		var it walkItem
		if parent := path.Dir(p); p == "." || now[parent] == kindDir {
			if it, err = describeAt(w, dirs, p, buf); err != nil {
				return tree{}, err
			}
		} // else its directory is gone, or is no directory now: so is p
		now[p] = it.e.Kind
		read++
		switch {
		case it.e.Kind == 0: // nothing there now
			if had {
				drop(i)
			}
		case it.key != [2]uint64{}:
			return tree{}, errRescan // a file with several links
		case it.e.Kind == kindDir && (!had || t.entries[i].Kind != kindDir):
			if had {
				drop(i)
			}
			whole[p] = true
			sub, err := walkAt(ctx, dirs, root, p)
			if err != nil {
				return tree{}, err
			}
			if sub.links > 0 || len(sub.mounts) > 0 || w.place.elsewhere(sub.place) {
				return tree{}, errRescan
			}
			read += sub.read
			for k, e := range sub.entries {
				e.Path = path.Join(p, e.Path)
				added = append(added, walkItem{e: e, ctime: sub.ctimes[k]})
			}
		case had:
			if t.entries[i].Kind == kindDir && it.e.Kind != kindDir {
				drop(i)
				added = append(added, it)
			} else {
				changed[i] = it
			}
		default:
			added = append(added, it)
		}
	}
	out := tree{entries: make([]entry, 0, len(t.entries)+len(added)), ctimes: make([]int64, 0, len(t.entries)+len(added)), place: w.place}
	for i, e := range t.entries {
		if gone[i] {
			continue
		}
		c := t.ctimes[i]
		if it, ok := changed[i]; ok {
			e, c = it.e, it.ctime
		}
		out.entries = append(out.entries, e)
		out.ctimes = append(out.ctimes, c)
	}
	out.read = read
	if len(added) == 0 {
		return out, nil
	}
	for _, it := range added {
		out.entries = append(out.entries, it.e)
		out.ctimes = append(out.ctimes, it.ctime)
	}
	idx := make([]int, len(out.entries)-1) // the root stays first
	for k := range idx {
		idx[k] = k + 1
	}
	slices.SortFunc(idx, func(a, b int) int { return treeOrder(out.entries[a].Path, out.entries[b].Path) })
	sorted := tree{entries: make([]entry, 1, len(out.entries)), ctimes: make([]int64, 1, len(out.entries)), place: w.place}
	sorted.entries[0], sorted.ctimes[0], sorted.read = out.entries[0], out.ctimes[0], read
	for _, k := range idx {
		sorted.entries = append(sorted.entries, out.entries[k])
		sorted.ctimes = append(sorted.ctimes, out.ctimes[k])
	}
	return sorted, nil
}

// under reports whether p is inside one of the directories whole holds: a look at each
// directory above it, not at every path walked.
func under(p string, whole map[string]bool) bool {
	for d := path.Dir(p); d != "." && d != "/"; d = path.Dir(d) {
		if whole[d] {
			return true
		}
	}
	return false
}

// describeAt reads path p of the tree as walk does; an entry of Kind 0 means nothing is
// there (or something walk leaves out, which the caller refuses). The path is resolved
// inside the tree, never through a symlink: one put where a directory was means the
// directory is gone.
func describeAt(w *walker, dirs *dirCache, p string, buf []byte) (walkItem, error) {
	if p == "." {
		d, release, err := dirs.open(".")
		if err != nil {
			return walkItem{}, err
		}
		defer release()
		it, err := w.describe(d.fd, "", ".", buf)
		if err == nil && it.e.Kind == 0 {
			err = errRescan
		}
		return it, err
	}
	d, base, release, err := dirs.split(p)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
		return walkItem{}, nil
	}
	if err != nil {
		return walkItem{}, fmt.Errorf("open the directory of %s: %w", p, err)
	}
	defer release()
	it, err := w.describe(d.fd, base, p, buf)
	if errors.Is(err, unix.ENOENT) {
		return walkItem{}, nil
	}
	if err == nil && it.e.Kind == 0 {
		err = errRescan // a mount point
	}
	return it, err
}

// walkAt walks directory p of the tree, opened inside it (never through a symlink).
func walkAt(ctx context.Context, dirs *dirCache, root, p string) (tree, error) {
	d, release, err := dirs.open(p)
	if err != nil {
		return tree{}, fmt.Errorf("open %s in %s: %w", p, root, err)
	}
	defer release()
	return walk(ctx, fmt.Sprintf("/proc/self/fd/%d", d.fd))
}

// treeOrder is the order of walk's entries: depth first, each directory's names in byte
// order, so a directory's entries come before the names after it ("a/b" before "a-b").
// The root (".") goes first, and is not passed here.
func treeOrder(a, b string) int {
	for i := range min(len(a), len(b)) {
		ca, cb := a[i], b[i]
		switch {
		case ca == cb:
			continue
		case ca == '/':
			return -1
		case cb == '/':
			return 1
		}
		return cmp.Compare(ca, cb)
	}
	return cmp.Compare(len(a), len(b))
}
