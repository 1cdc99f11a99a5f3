package localstore

import (
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// A volume's record must be writable on a full disk: an unmount the record can't hold
// keeps the volume mounted here for good (the engine never asks again, and a restart
// restores the mount from the record). So the store keeps a reserve: a file of
// reserveSize allocated blocks in the state dir. A record write that finds the disk full
// frees it and writes again; the reserve is made again after a later write, once there
// is room.

// reserveSize is what the reserve holds: records are a few KiB each.
const reserveSize = 1 << 20

func (s *Store) reservePath() string { return filepath.Join(s.root, "reserve") }

// keepReserve makes the reserve if it is missing. A disk without the room leaves it
// missing: the next record write tries again.
func (s *Store) keepReserve() {
	p := s.reservePath()
	if _, err := os.Stat(p); err == nil {
		s.reserveUsed.Store(false)
		return
	}
	tmp := p + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return
	}
	err = unix.Fallocate(int(f.Fd()), 0, 0, reserveSize)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		_ = os.Remove(tmp)
		s.reserveUsed.Store(true)
		return
	}
	s.reserveUsed.Store(false)
}

// useReserve frees the reserve for a record write, and reports whether there was one.
func (s *Store) useReserve() bool {
	if os.Remove(s.reservePath()) != nil {
		return false
	}
	s.reserveUsed.Store(true)
	return true
}
