package transfer

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/drayage/drayage/daemon/internal/failpoint"
)

// Finish checks that every wanted file arrived, creates links and special files, applies
// every entry's metadata (directories last, deepest first, so their times stick) and makes
// it all durable with one syncfs. A directory of an older copy that already looks as
// listed and gained or lost no entry is left alone: on a small delta, rewriting every
// directory's times would make the sync write an inode in every block group. It returns
// the tree's root hash. ctx bounds the reading of the files reused from staging that
// have no stored hash.
func (s *sink) Finish(ctx context.Context) ([32]byte, error) {
	for i, want := range s.send {
		if want && !s.received[i] {
			return [32]byte{}, fmt.Errorf("%s never arrived", s.entries[i].Path)
		}
	}
	for i, e := range s.entries {
		var err error
		switch e.Kind {
		case kindFile:
			if !s.send[i] && !s.settled[i] {
				s.stamps[i], err = s.withFile(e.Path, unix.O_RDONLY, e)
			}
		case kindSymlink:
			err = s.replace(e.Path, func() error { return s.root.Symlink(e.Target, e.Path) })
			if err == nil {
				err = s.metaAt(e)
			}
		case kindHardlink:
			err = s.replace(e.Path, func() error { return s.root.Link(e.Target, e.Path) })
			if err == nil {
				err = s.restamp(e.Target) // a new link changes the file's change time
			}
		case kindFIFO:
			err = s.replace(e.Path, func() error { return s.mknod(e) })
			if err == nil {
				_, err = s.withFile(e.Path, unix.O_RDONLY|unix.O_NONBLOCK, e)
			}
		case kindDevice: // never opened: opening a device can act on it
			err = s.replace(e.Path, func() error { return s.mknod(e) })
			if err == nil {
				err = s.metaAt(e)
			}
		}
		if err != nil {
			return [32]byte{}, fmt.Errorf("%s: %w", e.Path, err)
		}
	}
	var dirs []int
	for i, e := range s.entries {
		if e.Kind == kindDir {
			dirs = append(dirs, i)
		}
	}
	for _, i := range slices.Backward(dirs) {
		e := s.entries[i]
		if s.settledDirs[e.Path] && !s.touched[e.Path] {
			continue
		}
		if _, err := s.withFile(e.Path, unix.O_RDONLY|unix.O_DIRECTORY, e); err != nil {
			return [32]byte{}, fmt.Errorf("%s: %w", e.Path, err)
		}
	}
	if err := s.hashReused(ctx); err != nil {
		return [32]byte{}, err
	}
	failpoint.Hit("pull-finish")
	if err := s.sync(); err != nil {
		return [32]byte{}, fmt.Errorf("sync staging %s: %w", s.dir, err)
	}
	s.finished = true
	if err := s.index().save(IndexPath(s.dir), true); err != nil {
		return [32]byte{}, fmt.Errorf("staging %s: %w", s.dir, err)
	}
	// Staging is on disk as listed: the next pull into it need not walk it. Without a
	// record, it would.
	ctimes := make([]int64, len(s.entries))
	for i, e := range s.entries {
		if e.Kind == kindFile {
			ctimes[i] = s.stamps[i].ctime
		}
	}
	deltas := make(map[string]fileDelta, len(s.deltas))
	for i, parts := range s.deltas {
		b := s.bases[i]
		deltas[s.entries[i].Path] = fileDelta{baseSize: b[0], baseMTime: b[1], parts: parts}
	}
	_ = saveTree(s.dir, treeRecord{tree: tree{entries: s.entries, ctimes: ctimes}, synced: true, deltas: deltas})
	return s.rootHash(), nil
}

// restamp reads again the stamp of file p, changed since it was taken.
func (s *sink) restamp(p string) error {
	if s.files == nil {
		s.files = make(map[string]uint32)
		for i, e := range s.entries {
			if e.Kind == kindFile {
				s.files[e.Path] = uint32(i)
			}
		}
	}
	d, base, release, err := s.dirs.split(p)
	if err != nil {
		return err
	}
	defer release()
	var st unix.Stat_t
	if err := unix.Fstatat(d.fd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	s.stamps[s.files[p]] = stampOf(&st)
	return nil
}

// rootHash is the tree's root hash: over the manifest as sent and every file's content
// hash, or, for a sender that speaks protocol 1, only the files it sent.
func (s *sink) rootHash() [32]byte {
	if !s.rootAll {
		return rootHash(s.manifest.Clone(), len(s.entries), s.hashes)
	}
	all := maps.Clone(s.hashes)
	maps.Copy(all, s.kept)
	return rootHash(s.manifest.Clone(), len(s.entries), all)
}

// hashReused reads and hashes the files reused from staging that have no stored hash,
// several at once.
func (s *sink) hashReused(ctx context.Context) error {
	sums := make([][32]byte, len(s.verify))
	err := forEach(ctx, len(s.verify), func(k int) error {
		var err error
		sums[k], err = hashFile(ctx, s.dirs, s.entries[s.verify[k]].Path)
		return err
	})
	if err != nil {
		return fmt.Errorf("verify staging %s: %w", s.dir, err)
	}
	for k, i := range s.verify {
		s.kept[i] = sums[k]
	}
	return nil
}

// sync makes staging durable: every file system has one journal, or none, so one syncfs
// costs far less than an fsync per file.
func (s *sink) sync() error {
	d, release, err := s.dirs.open(".")
	if err != nil {
		return err
	}
	defer release()
	return unix.Syncfs(d.fd)
}

// replace removes whatever is at p (not a directory), then creates it with mk.
func (s *sink) replace(p string, mk func() error) error {
	s.touch(p)
	if err := s.root.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return mk()
}

// withFile opens p, which was there before this transfer, with flags and gives it e's
// metadata, dropping attributes it had that e has not. It returns the file's stamp as it
// is then.
func (s *sink) withFile(p string, flags int, e entry) (fileStamp, error) {
	d, base, release, err := s.dirs.split(p) // "." splits into "." and "."
	if err != nil {
		return fileStamp{}, err
	}
	defer release()
	fd, err := d.open(base, flags, 0)
	if err != nil {
		return fileStamp{}, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fileStamp{}, err
	}
	if err := dropOtherXattrs(fd, e); err != nil {
		return fileStamp{}, err
	}
	if err := setMeta(fd, e, looksOf(&st)); err != nil {
		return fileStamp{}, err
	}
	if err := unix.Fstat(fd, &st); err != nil {
		return fileStamp{}, err
	}
	return stampOf(&st), nil
}

func (s *sink) mknod(e entry) error {
	d, base, release, err := s.dirs.split(e.Path)
	if err != nil {
		return err
	}
	defer release()
	mode := uint32(unix.S_IFIFO)
	if e.Kind == kindDevice {
		mode = e.Mode & (unix.S_IFCHR | unix.S_IFBLK)
	}
	return unix.Mknodat(d.fd, base, mode|0o600, int(e.Rdev))
}

// metaAt sets owner, mode and times by name, without opening or following it (symlinks,
// devices).
func (s *sink) metaAt(e entry) error {
	d, base, release, err := s.dirs.split(e.Path)
	if err != nil {
		return err
	}
	defer release()
	if err := unix.Fchownat(d.fd, base, int(e.UID), int(e.GID), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	if e.Kind == kindDevice {
		if err := unix.Fchmodat(d.fd, base, e.Mode&0o7777, 0); err != nil {
			return err
		}
	}
	ts := []unix.Timespec{unix.NsecToTimespec(e.MTime), unix.NsecToTimespec(e.MTime)}
	return unix.UtimesNanoAt(d.fd, base, ts, unix.AT_SYMLINK_NOFOLLOW)
}
