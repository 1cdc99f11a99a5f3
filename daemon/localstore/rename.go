package localstore

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/drayage/drayage/daemon/transfer"
)

// Rename gives this node's copy of volume from the name to, as a volume of its own that
// no cluster record names yet (what a former owner does with writes a failover left
// behind: see the volume manager's diverged copies). It moves in one rename, never over
// an existing volume (ErrExist). The record of the tree, kept under the old name's change
// log, goes; so do the root hash of the old copy (the new volume is made here) and its
// mounts (they were of the old name's).
func (s *Store) Rename(from, to string) (Record, error) {
	rec, err := s.Load(from)
	if err != nil {
		return Record{}, err
	}
	if err := transfer.DropTree(s.DataDir(from)); err != nil {
		return Record{}, fmt.Errorf("rename volume %q to %q: %w", from, to, err)
	}
	err = unix.Renameat2(unix.AT_FDCWD, s.volumeDir(from), unix.AT_FDCWD, s.volumeDir(to), unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EEXIST) {
		return Record{}, ErrExist
	}
	if err != nil {
		return Record{}, fmt.Errorf("rename volume %q to %q: %w", from, to, err)
	}
	if err := syncDir(s.volumesDir()); err != nil {
		return Record{}, fmt.Errorf("rename volume %q to %q: %w", from, to, err)
	}
	rec.Name, rec.Root, rec.Pending, rec.MovedTo, rec.MovedAt, rec.Mounts = to, "", false, "", 0, nil
	return rec, s.Save(rec)
}
