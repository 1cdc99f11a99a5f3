package transfer

import (
	"os"
	"path"
	"sync"
)

// dirCache holds an os.Root per directory of a tree, so that work on many files of one
// directory resolves the directory once instead of once per file. Names are still
// resolved by os.Root, never followed out of the tree.
type dirCache struct {
	root *os.Root
	mu   sync.Mutex
	dirs map[string]*os.Root
}

// maxCachedDirs bounds the open directory handles.
const maxCachedDirs = 512

func newDirCache(root *os.Root) *dirCache { return &dirCache{root: root, dirs: map[string]*os.Root{}} }

// split returns the root for p's directory and p's base name. release must be called
// when done with the root.
func (c *dirCache) split(p string) (dir *os.Root, base string, release func(), err error) {
	d, base := path.Dir(p), path.Base(p)
	if d == "." {
		return c.root, base, func() {}, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if r, ok := c.dirs[d]; ok {
		return r, base, func() {}, nil
	}
	r, err := c.root.OpenRoot(d)
	if err != nil {
		return nil, "", nil, err
	}
	if len(c.dirs) >= maxCachedDirs {
		return r, base, func() { r.Close() }, nil
	}
	c.dirs[d] = r
	return r, base, func() {}, nil
}

// close closes the cached directories.
func (c *dirCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.dirs {
		r.Close()
	}
	c.dirs = map[string]*os.Root{}
}
