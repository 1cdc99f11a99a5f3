package transfer

import (
	"errors"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// A volume is one file system mount: the sender must not follow a mount inside it into
// another tree. A bind mount of a directory of the same file system has the same st_dev,
// so st_dev alone can't tell; statx's mount ID (Linux 5.8) can. Kernels without statx
// fall back to fstatat and st_dev.

// noStatx is set once the kernel has said it lacks statx.
var noStatx atomic.Bool

// statAt is fstatat(dfd, name, flags) that also returns the ID of the mount name is on
// (0 if the kernel can't say).
func statAt(dfd int, name string, flags int) (unix.Stat_t, uint64, error) {
	var st unix.Stat_t
	if !noStatx.Load() {
		var x unix.Statx_t
		err := unix.Statx(dfd, name, flags|unix.AT_STATX_SYNC_AS_STAT, unix.STATX_BASIC_STATS|unix.STATX_MNT_ID, &x)
		if err == nil {
			st = unix.Stat_t{
				Dev: unix.Mkdev(x.Dev_major, x.Dev_minor), Ino: x.Ino, Nlink: uint64(x.Nlink), Mode: uint32(x.Mode),
				Uid: x.Uid, Gid: x.Gid, Rdev: unix.Mkdev(x.Rdev_major, x.Rdev_minor), Size: int64(x.Size),
				Blksize: int64(x.Blksize), Blocks: int64(x.Blocks),
				Mtim: unix.Timespec{Sec: x.Mtime.Sec, Nsec: int64(x.Mtime.Nsec)},
				Atim: unix.Timespec{Sec: x.Atime.Sec, Nsec: int64(x.Atime.Nsec)},
				Ctim: unix.Timespec{Sec: x.Ctime.Sec, Nsec: int64(x.Ctime.Nsec)},
			}
			var mnt uint64
			if x.Mask&unix.STATX_MNT_ID != 0 {
				mnt = x.Mnt_id
			}
			return st, mnt, nil
		}
		if !errors.Is(err, unix.ENOSYS) {
			return st, 0, err
		}
		noStatx.Store(true)
	}
	if name == "" && flags&unix.AT_EMPTY_PATH != 0 {
		return st, 0, unix.Fstat(dfd, &st)
	}
	return st, 0, unix.Fstatat(dfd, name, &st, flags)
}

// place is where an entry lives: its file system and, where the kernel says, its mount.
type place struct{ dev, mnt uint64 }

func placeOf(st *unix.Stat_t, mnt uint64) place { return place{st.Dev, mnt} }

// elsewhere reports whether p is outside the tree rooted at root's place: another file
// system, or another mount of the same one.
func (root place) elsewhere(p place) bool {
	return p.dev != root.dev || root.mnt != 0 && p.mnt != 0 && p.mnt != root.mnt
}
