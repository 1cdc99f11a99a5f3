package localstore

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/moby/sys/mountinfo"
)

// ErrMountInside means a directory to delete has a file system mounted inside it:
// deleting it would delete what is mounted there, which is not the volume's.
var ErrMountInside = errors.New("something is mounted inside it")

// checkNoMounts fails with ErrMountInside if anything is mounted at or below dir.
func checkNoMounts(dir string) error {
	dir = filepath.Clean(dir)
	mounts, err := mountinfo.GetMounts(func(m *mountinfo.Info) (skip, stop bool) {
		return m.Mountpoint != dir && !strings.HasPrefix(m.Mountpoint, dir+"/"), false
	})
	if err != nil {
		return fmt.Errorf("check for mounts in %s: %w", dir, err)
	}
	if len(mounts) == 0 {
		return nil
	}
	points := make([]string, len(mounts))
	for i, m := range mounts {
		points[i] = m.Mountpoint
	}
	return fmt.Errorf("%s: %w (%s); unmount it first", dir, ErrMountInside, strings.Join(points, ", "))
}
