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
	// Bind makes target show the tree at source. target exists and is empty.
	Bind(source, target string) error
	// Unbind removes a mount made by Bind.
	Unbind(target string) error
	// Mounted reports whether something is mounted at target.
	Mounted(target string) (bool, error)
}

// Bind is the real Mounter: Linux bind mounts. It needs CAP_SYS_ADMIN.
type Bind struct{}

var _ Mounter = Bind{}

// Bind bind-mounts source onto target.
func (Bind) Bind(source, target string) error {
	if err := unix.Mount(source, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind mount %s on %s: %w", source, target, err)
	}
	return nil
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
