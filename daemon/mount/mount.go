// Package mount hands a volume's data dir to the engine as a bind mount under the mount
// dir. In a managed plugin the mount dir is the plugin's propagatedMount, so the bind
// propagates to the host where the engine can see it.
package mount

import (
	"errors"
	"fmt"
	"os"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// Mounter makes and removes the mountpoints handed to the engine. Implementations must be
// safe for concurrent use on different targets.
type Mounter interface {
	// Bind makes target show the tree at source, as o says. target exists and is empty.
	Bind(source, target string, o Options) error
	// Unbind removes a mount made by Bind.
	Unbind(target string) error
	// Mounted reports whether something is mounted at target.
	Mounted(target string) (bool, error)
	// InUse reports whether a container has the tree bound at target mounted, or
	// ErrUseUnknown if that can't be told (users.go).
	InUse(target string) (bool, error)
	// Propagated fails with ErrNotPropagated unless the engine's namespace shows the
	// bind at target (propagated.go); only asked of a managed plugin's mounts.
	Propagated(target string) error
}

// Options say how a volume is mounted.
type Options struct {
	// Privileged honours setuid and setgid bits and device nodes in the volume (its
	// allow-privileged option); otherwise the mount is nosuid,nodev.
	Privileged bool
}

// Bind is the real Mounter: Linux bind mounts. It needs CAP_SYS_ADMIN.
type Bind struct{}

var _ Mounter = Bind{}

// Bind bind-mounts source onto target. Only source's own file system is shown: a mount
// inside the volume stays out of it, as it stays out of a transfer.
//
// A nosuid,nodev mount gets its flags before it is attached (open_tree, mount_setattr,
// move_mount): in a managed plugin the mount dir propagates to the engine's namespace,
// and a remount's flags would not follow the mount there. Kernels before 5.12 lack
// mount_setattr; there the flags are set by a remount, which holds inside the plugin's
// namespace only.
func (Bind) Bind(source, target string, o Options) error {
	if o.Privileged {
		if err := unix.Mount(source, target, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind mount %s on %s: %w", source, target, err)
		}
		return nil
	}
	err := attachUnprivileged(source, target)
	if errors.Is(err, unix.ENOSYS) {
		err = remountUnprivileged(source, target)
	}
	if err != nil {
		return fmt.Errorf("bind mount %s on %s nosuid,nodev: %w", source, target, err)
	}
	return nil
}

// attachUnprivileged clones source's mount, sets nosuid,nodev on the clone, and attaches
// it at target.
func attachUnprivileged(source, target string) error {
	fd, err := unix.OpenTree(unix.AT_FDCWD, source, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		return err
	}
	return unix.MoveMount(fd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH)
}

// remountUnprivileged bind-mounts source on target and remounts it nosuid,nodev, keeping
// the flags the bind mount has (read-only, noexec, atime).
func remountUnprivileged(source, target string) error {
	if err := unix.Mount(source, target, "", unix.MS_BIND, ""); err != nil {
		return err
	}
	var st unix.Statfs_t
	err := unix.Statfs(target, &st)
	if err == nil {
		flags := uintptr(unix.MS_REMOUNT | unix.MS_BIND | unix.MS_NOSUID | unix.MS_NODEV)
		for bit, ms := range map[int64]uintptr{unix.ST_RDONLY: unix.MS_RDONLY, unix.ST_NOEXEC: unix.MS_NOEXEC,
			unix.ST_NOATIME: unix.MS_NOATIME, unix.ST_NODIRATIME: unix.MS_NODIRATIME, unix.ST_RELATIME: unix.MS_RELATIME} {
			if st.Flags&bit != 0 {
				flags |= ms
			}
		}
		err = unix.Mount("", target, "", flags, "")
	}
	if err != nil {
		_ = unix.Unmount(target, unix.MNT_DETACH)
	}
	return err
}

// Unbind unmounts target, detaching it lazily if something still holds it busy.
func (Bind) Unbind(target string) error {
	err := unix.Unmount(target, 0)
	if errors.Is(err, unix.EBUSY) {
		err = unix.Unmount(target, unix.MNT_DETACH)
	}
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("unmount %s: %w", target, err)
	}
	return nil
}

// Mounted reports whether target is a mountpoint.
func (Bind) Mounted(target string) (bool, error) {
	ok, err := mountinfo.Mounted(target)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("check mount at %s: %w", target, err)
	}
	return ok, nil
}
