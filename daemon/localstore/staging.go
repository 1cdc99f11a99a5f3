package localstore

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/drayage/drayage/daemon/transfer"
)

// A pull that fails keeps what arrived verified in staging, for the next attempt to
// resume from. One that is never tried again would hold its disk space for ever, so
// staging trees that no pull has used for a while are swept: at start, and now and then.

// SweepStaging deletes the staging trees (with their stored hashes) that no pull has
// used for unused (their last change, or the last write of their hashes), but for those
// inUse names. It returns the names of the trees it deleted.
func (s *Store) SweepStaging(unused time.Duration, inUse func(name string) bool) ([]string, error) {
	entries, err := os.ReadDir(s.stagingDir())
	if err != nil {
		return nil, err
	}
	var swept []string
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || inUse(name) {
			continue
		}
		if time.Since(s.stagingUsed(name)) < unused || checkNoMounts(s.StagingDir(name)) != nil {
			continue
		}
		err := transfer.DropTree(s.StagingDir(name))
		if err == nil {
			err = os.RemoveAll(s.StagingDir(name))
		}
		if err == nil {
			err = transfer.RemoveIndex(s.StagingDir(name))
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		swept = append(swept, name)
	}
	// Stored hashes and tree records whose tree is gone (a crash between the removals)
	// go too.
	for _, e := range entries {
		for _, beside := range []string{transfer.IndexPath("x"), transfer.TreePath("x")} {
			if name, ok := strings.CutSuffix(e.Name(), filepath.Ext(beside)); ok && !e.IsDir() {
				if _, err := os.Lstat(s.StagingDir(name)); errors.Is(err, fs.ErrNotExist) && !inUse(name) {
					_ = os.Remove(filepath.Join(s.stagingDir(), e.Name()))
				}
			}
		}
	}
	return swept, errors.Join(errs...)
}

// stagingUsed is when a pull last used the staging tree of name: the later of the tree's
// last change (its own entries or attributes) and the last write of its stored hashes,
// which every attempt writes as it ends.
func (s *Store) stagingUsed(name string) time.Time {
	var last time.Time
	var st unix.Stat_t
	if unix.Lstat(s.StagingDir(name), &st) == nil {
		last = time.Unix(st.Ctim.Unix())
	}
	if fi, err := os.Stat(transfer.IndexPath(s.StagingDir(name))); err == nil && fi.ModTime().After(last) {
		last = fi.ModTime()
	}
	return last
}

// DropStaging deletes the staging tree of a volume, with its stored hashes: a replica's,
// once the replica is dropped.
func (s *Store) DropStaging(name string) {
	_ = transfer.DropTree(s.StagingDir(name))
	_ = os.RemoveAll(s.StagingDir(name))
	_ = transfer.RemoveIndex(s.StagingDir(name))
}

// DropDownload deletes the archive a volume was filled from, with its download's state.
func (s *Store) DropDownload(name string) {
	_ = os.Remove(s.DownloadPath(name))
	_ = os.Remove(s.DownloadPath(name) + ".json")
}
