package transfer

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The POSIX ACLs, as extended attributes.
const (
	aclAccess  = "system.posix_acl_access"
	aclDefault = "system.posix_acl_default"
)

// looks is what a file has now, so that setMeta makes only the calls that change it.
type looks struct {
	uid, gid uint32
	// mode is its permission bits, or modeUnknown.
	mode uint32
}

const modeUnknown = ^uint32(0)

func looksOf(st *unix.Stat_t) looks { return looks{st.Uid, st.Gid, st.Mode & 0o7777} }

// setMeta gives the open file fd the owner, mode, extended attributes and times of e, in
// that order (a chown clears setuid bits; writing attributes changes ctime only). Times
// come last: a file with its final times is a complete one.
func setMeta(fd int, e entry, now looks) error {
	if now.uid != e.UID || now.gid != e.GID {
		if err := unix.Fchown(fd, int(e.UID), int(e.GID)); err != nil {
			return err
		}
		if now.mode&0o6000 != 0 {
			now.mode = modeUnknown // the chown may have cleared setuid and setgid
		}
	}
	if now.mode != e.Mode&0o7777 {
		if err := unix.Fchmod(fd, e.Mode&0o7777); err != nil {
			return err
		}
	}
	for _, x := range e.Xattrs {
		if err := unix.Fsetxattr(fd, x.Name, x.Value, 0); err != nil {
			return fmt.Errorf("set attribute %s: %w", x.Name, err)
		}
	}
	return futimens(fd, e.MTime)
}

// fresh is how a file that d.create just made looks, made with perm: owned by us (the
// group as d hands it down) with perm less the umask, unless d hands down an ACL.
func (d *dir) fresh(perm uint32) looks {
	l := looks{uid: euid, gid: d.gid, mode: modeUnknown}
	if mask, ok := umask(); ok && !d.defaultACL {
		l.mode = perm &^ mask
	}
	return l
}

// dropOtherXattrs removes the extended attributes of fd that e does not list, but for the
// security.* ones: the receiving host's security labels are its own. A file capability
// (security.capability) is no label: it goes too unless e lists it.
func dropOtherXattrs(fd int, e entry) error {
	names, err := flistxattr(fd)
	if err != nil {
		if errors.Is(err, unix.ENOTSUP) {
			return nil
		}
		return fmt.Errorf("list attributes: %w", err)
	}
	for _, name := range names {
		label := strings.HasPrefix(name, "security.") && name != capabilityXattr
		if label || slices.ContainsFunc(e.Xattrs, func(x xattr) bool { return x.Name == name }) {
			continue
		}
		if err := unix.Fremovexattr(fd, name); err != nil && !errors.Is(err, unix.ENODATA) {
			return fmt.Errorf("remove attribute %s: %w", name, err)
		}
	}
	return nil
}

func flistxattr(fd int) ([]string, error) {
	size, err := unix.Flistxattr(fd, nil)
	if err != nil || size == 0 {
		return nil, err
	}
	buf := make([]byte, size)
	if size, err = unix.Flistxattr(fd, buf); err != nil {
		return nil, err
	}
	var names []string
	for name := range strings.SplitSeq(string(buf[:size]), "\x00") {
		if name != "" {
			names = append(names, name)
		}
	}
	return names, nil
}

// futimens sets a file's access and modification times to mtime (nanoseconds), by
// descriptor: utimensat with no path, as futimens(3) does.
func futimens(fd int, mtime int64) error {
	ts := [2]unix.Timespec{unix.NsecToTimespec(mtime), unix.NsecToTimespec(mtime)}
	for {
		_, _, errno := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
		switch errno {
		case 0:
			return nil
		case unix.EINTR:
			continue
		default:
			return errno
		}
	}
}

// umask is the process's file mode creation mask, as /proc reports it (reading it with
// umask(2) would change it for a moment under every other goroutine).
var umask = sync.OnceValues(func() (uint32, bool) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Umask:"); ok {
			m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32)
			return uint32(m), err == nil
		}
	}
	return 0, false
})

// Who new files belong to: drayage never changes its own identity.
var euid, egid = uint32(os.Geteuid()), uint32(os.Getegid())
