package localstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/drayage/drayage/daemon/internal/failpoint"
	"github.com/drayage/drayage/daemon/transfer"
)

// ErrNotExist is returned for a volume the store does not hold.
var ErrNotExist = errors.New("volume not held on this node")

// ErrExist is returned by Create for a volume the store already holds.
var ErrExist = errors.New("volume already held on this node")

const recordFile = "volume.json"

// Store is the set of volumes held under one state dir.
type Store struct {
	root string
	// reserveUsed: a record write freed the reserve (reserve.go); it is made again once
	// there is room.
	reserveUsed atomic.Bool
}

// Open prepares the layout under root and sweeps what an interrupted create or remove
// left behind.
func Open(root string) (*Store, error) {
	s := &Store{root: root}
	for _, dir := range []string{s.volumesDir(), s.tmpDir(), s.trashDir(), s.stagingDir(), s.downloadsDir()} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("prepare state dir %s: %w", root, err)
		}
	}
	s.keepReserve()
	if err := s.pruneRemovals(); err != nil {
		return nil, fmt.Errorf("sweep %s: %w", s.removalsDir(), err)
	}
	for _, dir := range []string{s.tmpDir(), s.trashDir()} {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return nil, fmt.Errorf("sweep %s: %w", dir, err)
		}
		for _, e := range entries {
			p := filepath.Join(dir, e.Name())
			if checkNoMounts(p) != nil {
				continue // never delete what is mounted there
			}
			if err := os.RemoveAll(p); err != nil {
				return nil, fmt.Errorf("sweep %s: %w", dir, err)
			}
		}
	}
	return s, nil
}

func (s *Store) volumesDir() string { return filepath.Join(s.root, "volumes") }
func (s *Store) tmpDir() string     { return filepath.Join(s.root, "tmp") }
func (s *Store) trashDir() string   { return filepath.Join(s.root, "trash") }

// stagingDir holds volumes being pulled from other nodes. It is kept across restarts: a
// pull that was interrupted resumes from the files verified there.
func (s *Store) stagingDir() string { return filepath.Join(s.root, "staging") }

// StagingDir is where a pull of the named volume assembles its tree.
func (s *Store) StagingDir(name string) string { return filepath.Join(s.stagingDir(), name) }

// DownloadPath is where the archive a volume is filled from downloads to (its download's
// state beside it, with .json added). The directory exists.
func (s *Store) DownloadPath(name string) string { return filepath.Join(s.downloadsDir(), name) }

func (s *Store) downloadsDir() string { return filepath.Join(s.root, "downloads") }

// Install puts a pulled tree (a finished staging dir) in place as the volume's data, in
// one atomic step: the volume is its old data, or none, or the complete new tree. A
// volume held here already (a stale replica) has its data swapped; otherwise the volume
// is made around the tree and renamed into volumes/. A volume containers may write has
// no tree record (transfer.DropTree): neither tree keeps one.
func (s *Store) Install(rec Record, staging string) error {
	if err := errors.Join(transfer.DropTree(staging), transfer.DropTree(s.DataDir(rec.Name))); err != nil {
		return fmt.Errorf("install volume %q: %w", rec.Name, err)
	}
	if _, err := os.Lstat(s.volumeDir(rec.Name)); err == nil {
		if err := unix.Renameat2(unix.AT_FDCWD, staging, unix.AT_FDCWD, s.DataDir(rec.Name), unix.RENAME_EXCHANGE); err != nil {
			return fmt.Errorf("install volume %q: %w", rec.Name, err)
		}
		failpoint.Hit("install-swapped")
		if err := syncDir(s.volumeDir(rec.Name)); err != nil {
			return err
		}
		if err := s.discard(rec.Name, staging); err != nil { // the old data
			return fmt.Errorf("remove the old data of volume %q: %w", rec.Name, err)
		}
		if err := transfer.MoveIndex(staging, s.DataDir(rec.Name)); err != nil {
			return fmt.Errorf("install volume %q: %w", rec.Name, err)
		}
		return s.writeRecord(s.volumeDir(rec.Name), rec)
	}
	tmp, err := os.MkdirTemp(s.tmpDir(), rec.Name+".")
	if err != nil {
		return fmt.Errorf("install volume %q: %w", rec.Name, err)
	}
	if err := os.Rename(staging, filepath.Join(tmp, "data")); err != nil {
		_ = os.RemoveAll(tmp)
		return fmt.Errorf("install volume %q: %w", rec.Name, err)
	}
	if err := s.writeRecord(tmp, rec); err != nil {
		_ = os.Rename(filepath.Join(tmp, "data"), staging)
		_ = os.RemoveAll(tmp)
		return err
	}
	if err := os.Rename(tmp, s.volumeDir(rec.Name)); err != nil {
		_ = os.Rename(filepath.Join(tmp, "data"), staging)
		_ = os.RemoveAll(tmp)
		return fmt.Errorf("install volume %q: %w", rec.Name, err)
	}
	if err := transfer.MoveIndex(staging, s.DataDir(rec.Name)); err != nil {
		return fmt.Errorf("install volume %q: %w", rec.Name, err)
	}
	return syncDir(s.volumesDir())
}

// discard moves a tree of volume name that is no longer wanted into trash/, for
// EmptyTrash to delete: deleting a large tree takes long (a second a GiB here), and a
// Mount must not wait for it. What is in trash/ at start is deleted too.
func (s *Store) discard(name, dir string) error {
	t, err := os.MkdirTemp(s.trashDir(), name+".")
	if err != nil {
		return err
	}
	if err := os.Rename(dir, filepath.Join(t, "data")); err != nil {
		_ = os.Remove(t)
		return err
	}
	return nil
}

// EmptyTrash deletes what was put in trash/ to be deleted (discard), but for anything
// mounted there.
func (s *Store) EmptyTrash() error {
	entries, err := os.ReadDir(s.trashDir())
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		p := filepath.Join(s.trashDir(), e.Name())
		if checkNoMounts(p) != nil {
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// InstallReplica puts a synced tree (a finished staging dir) in place as the data of
// this node's replica of a volume, in one atomic step: the replica is its last synced
// tree or the complete new one, never anything between. The tree it replaces is kept as
// the staging tree of the next sync, which PrimeStaging brings up to date first. rec is
// the replica's record, written once the tree is in place.
func (s *Store) InstallReplica(rec Record, staging string) error {
	if _, err := os.Lstat(s.volumeDir(rec.Name)); errors.Is(err, fs.ErrNotExist) {
		return s.Install(rec, staging)
	}
	data := s.DataDir(rec.Name)
	if err := unix.Renameat2(unix.AT_FDCWD, staging, unix.AT_FDCWD, data, unix.RENAME_EXCHANGE); err != nil {
		return fmt.Errorf("install the replica of volume %q: %w", rec.Name, err)
	}
	failpoint.Hit("install-swapped")
	if err := syncDir(s.volumeDir(rec.Name)); err != nil {
		return err
	}
	if err := swapBeside(staging, data, transfer.IndexPath, transfer.MoveIndex); err != nil {
		return fmt.Errorf("install the replica of volume %q: %w", rec.Name, err)
	}
	if err := swapBeside(staging, data, transfer.TreePath, transfer.MoveTree); err != nil {
		return fmt.Errorf("install the replica of volume %q: %w", rec.Name, err)
	}
	return s.writeRecord(s.volumeDir(rec.Name), rec)
}

// swapBeside exchanges what is kept beside two trees that were just exchanged (at
// pathOf: stored hashes, tree records), or moves it with move where only one has it.
// Stored hashes left with the wrong tree would only be read again (a hash holds only
// for a file with its stamp). Tree records are for trees only drayage writes here: the
// replica and its staging tree, each a complete sync.
func swapBeside(a, b string, pathOf func(string) string, move func(from, to string) error) error {
	pa, pb := pathOf(a), pathOf(b)
	err := unix.Renameat2(unix.AT_FDCWD, pa, unix.AT_FDCWD, pb, unix.RENAME_EXCHANGE)
	if errors.Is(err, unix.ENOENT) {
		if _, serr := os.Lstat(pa); serr == nil {
			return move(a, b)
		}
		return move(b, a)
	}
	return err
}

// PrimeStaging brings the staging tree of a replica's next sync up to date from the
// replica's data (transfer.Prime), so that the sync sends only what changed since the
// replica's last one. With trust, the two trees' records are read instead of the trees
// (transfer.TreePath). It reports how many files and bytes it copied.
func (s *Store) PrimeStaging(ctx context.Context, name string, trust bool) (int, int64, error) {
	files, bytes, err := transfer.Prime(ctx, s.DataDir(name), s.StagingDir(name), trust)
	if err != nil {
		return files, bytes, fmt.Errorf("prepare the sync of volume %q from its replica: %w", name, err)
	}
	return files, bytes, nil
}

func (s *Store) volumeDir(name string) string { return filepath.Join(s.volumesDir(), name) }

// DataDir is where the files of the named volume live.
func (s *Store) DataDir(name string) string { return filepath.Join(s.volumeDir(name), "data") }

// Load reads the record of the named volume.
func (s *Store) Load(name string) (Record, error) {
	b, err := os.ReadFile(filepath.Join(s.volumeDir(name), recordFile))
	if errors.Is(err, fs.ErrNotExist) {
		return Record{}, ErrNotExist
	}
	if err != nil {
		return Record{}, fmt.Errorf("read record of volume %q: %w", name, err)
	}
	var rec Record
	if err := json.Unmarshal(b, &rec); err != nil {
		return Record{}, fmt.Errorf("decode record of volume %q (%s): %w", name, s.volumeDir(name), err)
	}
	rec.Name = name
	return rec, nil
}

// Create adds a volume with an empty data dir owned and moded as given. It is atomic:
// the volume is either fully there or not at all.
func (s *Store) Create(rec Record, uid, gid int, mode os.FileMode) (err error) {
	if _, err := os.Lstat(s.volumeDir(rec.Name)); err == nil {
		return ErrExist
	}
	tmp, err := os.MkdirTemp(s.tmpDir(), rec.Name+".")
	if err != nil {
		return fmt.Errorf("create volume %q: %w", rec.Name, err)
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o700); err != nil {
		return fmt.Errorf("create volume %q: %w", rec.Name, err)
	}
	data := filepath.Join(tmp, "data")
	if err := os.Mkdir(data, mode.Perm()); err != nil {
		return fmt.Errorf("create volume %q: %w", rec.Name, err)
	}
	// Mkdir is subject to the umask; set the mode and owner explicitly.
	if err := os.Chmod(data, mode); err != nil {
		return fmt.Errorf("create volume %q: %w", rec.Name, err)
	}
	if err := os.Lchown(data, uid, gid); err != nil {
		return fmt.Errorf("create volume %q: set owner %d:%d: %w", rec.Name, uid, gid, err)
	}
	if err := s.writeRecord(tmp, rec); err != nil {
		return err
	}
	if err := syncDir(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, s.volumeDir(rec.Name)); err != nil {
		if errors.Is(err, syscall.EEXIST) || errors.Is(err, syscall.ENOTEMPTY) {
			return ErrExist
		}
		return fmt.Errorf("create volume %q: %w", rec.Name, err)
	}
	return syncDir(s.volumesDir())
}

// Save replaces the record of a volume the store holds.
func (s *Store) Save(rec Record) error {
	dir := s.volumeDir(rec.Name)
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		return ErrNotExist
	}
	return s.writeRecord(dir, rec)
}

// Delete removes a volume and its data. The volume leaves volumes/ in one rename, so a
// crash midway never leaves a half-deleted volume behind. A volume with a file system
// mounted inside it is not deleted (ErrMountInside): that would delete what is mounted.
func (s *Store) Delete(name string) error {
	if err := checkNoMounts(s.volumeDir(name)); err != nil {
		return fmt.Errorf("remove volume %q: %w", name, err)
	}
	trash, err := os.MkdirTemp(s.trashDir(), name+".")
	if err != nil {
		return fmt.Errorf("remove volume %q: %w", name, err)
	}
	target := filepath.Join(trash, "volume")
	if err := os.Rename(s.volumeDir(name), target); err != nil {
		_ = os.Remove(trash)
		if errors.Is(err, fs.ErrNotExist) {
			return ErrNotExist
		}
		return fmt.Errorf("remove volume %q: %w", name, err)
	}
	if err := syncDir(s.volumesDir()); err != nil {
		return err
	}
	if err := os.RemoveAll(trash); err != nil {
		return fmt.Errorf("remove data of volume %q from %s: %w", name, trash, err)
	}
	return nil
}

// Uninstall takes back an Install whose ownership could not be committed: the volume
// leaves volumes/ in one step, and its data goes back to staging, where the next pull
// resumes from it. A crash in between loses only that staging copy (the volume belongs to
// another node, which still has it).
func (s *Store) Uninstall(name string) error {
	trash, err := os.MkdirTemp(s.trashDir(), name+".")
	if err != nil {
		return fmt.Errorf("uninstall volume %q: %w", name, err)
	}
	defer os.RemoveAll(trash)
	if err := transfer.DropTree(s.StagingDir(name)); err != nil {
		return fmt.Errorf("uninstall volume %q: %w", name, err)
	}
	target := filepath.Join(trash, "volume")
	if err := os.Rename(s.volumeDir(name), target); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return ErrNotExist
		}
		return fmt.Errorf("uninstall volume %q: %w", name, err)
	}
	if err := syncDir(s.volumesDir()); err != nil {
		return err
	}
	if err := os.RemoveAll(s.StagingDir(name)); err != nil {
		return fmt.Errorf("uninstall volume %q: %w", name, err)
	}
	if err := os.Rename(filepath.Join(target, "data"), s.StagingDir(name)); err != nil {
		return fmt.Errorf("uninstall volume %q: keep its data for the next pull: %w", name, err)
	}
	if err := transfer.MoveIndex(filepath.Join(target, "data"), s.StagingDir(name)); err != nil {
		return fmt.Errorf("uninstall volume %q: %w", name, err)
	}
	return syncDir(s.stagingDir())
}

// ReuseReplica starts a pull of a volume from this node's replica of it (its old copy,
// kept after the volume moved on and was confirmed held elsewhere): unless an earlier
// pull left a staging tree, the replica's data becomes the staging tree, so that only
// what changed is sent. A copy that is not a confirmed replica, or that containers here
// still mount, is left alone. It reports whether it reused one.
func (s *Store) ReuseReplica(name string) (bool, error) {
	if _, err := os.Lstat(s.StagingDir(name)); err == nil {
		return false, nil
	}
	rec, err := s.Load(name)
	if errors.Is(err, ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !rec.Replica() || rec.MountCount() > 0 {
		return false, nil
	}
	return true, s.Uninstall(name)
}

// List returns the records of every volume held, sorted by name.
func (s *Store) List() ([]Record, error) {
	entries, err := os.ReadDir(s.volumesDir())
	if err != nil {
		return nil, fmt.Errorf("list volumes in %s: %w", s.volumesDir(), err)
	}
	recs := make([]Record, 0, len(entries))
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		rec, err := s.Load(e.Name())
		if err != nil {
			return nil, err
		}
		recs = append(recs, rec)
	}
	slices.SortFunc(recs, func(a, b Record) int { return strings.Compare(a.Name, b.Name) })
	return recs, nil
}

// Size is the apparent size in bytes of the files in a volume's data dir.
func (s *Store) Size(name string) (int64, error) {
	var total int64
	err := filepath.WalkDir(s.DataDir(name), func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			total += info.Size()
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("measure volume %q: %w", name, err)
	}
	return total, nil
}

// writeRecord writes dir/volume.json through a synced temporary file and a rename. A
// full disk does not stop it while the reserve lasts (reserve.go).
func (s *Store) writeRecord(dir string, rec Record) error {
	err := writeRecordFile(dir, rec)
	if errors.Is(err, syscall.ENOSPC) && s.useReserve() {
		err = writeRecordFile(dir, rec)
	}
	if err == nil && s.reserveUsed.Load() {
		s.keepReserve()
	}
	return err
}

func writeRecordFile(dir string, rec Record) error {
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return fmt.Errorf("encode record of volume %q: %w", rec.Name, err)
	}
	var suffix [6]byte
	_, _ = rand.Read(suffix[:])
	tmp := filepath.Join(dir, recordFile+".tmp-"+hex.EncodeToString(suffix[:]))
	if err := writeFileSync(tmp, b); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write record of volume %q: %w", rec.Name, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, recordFile)); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write record of volume %q: %w", rec.Name, err)
	}
	return syncDir(dir)
}

func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
