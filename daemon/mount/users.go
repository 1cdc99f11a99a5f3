package mount

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// ErrUseUnknown says that whether a mount is in use can't be told here: the daemon does
// not see the host's processes (a plugin without the host's PID namespace), or one of
// them could not be read.
var ErrUseUnknown = errors.New("cannot tell which containers use the mount")

// InUse reports whether a container has the tree bound at target mounted: whether some
// process's mount table holds a mount of that tree (or of a directory inside it) that is
// not one of drayage's own views of it. drayage's views are the bind at target and its
// propagated copies in the engine's namespace, which share the bind's peer group; a
// container's mount of a volume is a private copy, a mount of its own.
//
// The engine does not tell a plugin which of its mounts died with it: after a crash of
// the engine or of the whole node, no Unmount comes for the containers that were
// running (moby cleans them up before it knows their volumes). This is how the daemon
// finds out. It reads every process's mountinfo (world-readable; no ptrace needed), so
// the daemon must see the host's processes: a plugin with pidhost.
func (Bind) InUse(target string) (bool, error) {
	self, err := selfView(target)
	if err != nil {
		return false, err
	}
	return scanUsers("/proc", self)
}

// view is drayage's bind of a volume's tree, as mountinfo shows it.
type view struct {
	id           int // the bind's mount ID, unique on the host
	major, minor int
	root         string // the tree's path in its file system
	peers        string // "shared:N" of the bind, or "" if it propagates nowhere
}

// selfView reads this process's bind at target.
func selfView(target string) (view, error) {
	if os.Getpid() == 1 {
		return view{}, fmt.Errorf("%w: this daemon runs in a PID namespace of its own and sees no container (a plugin needs pidhost)", ErrUseUnknown)
	}
	abs, err := filepath.Abs(target)
	if err != nil {
		return view{}, err
	}
	ms, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(abs))
	if err != nil {
		return view{}, fmt.Errorf("%w: read the mount table: %w", ErrUseUnknown, err)
	}
	if len(ms) == 0 {
		return view{}, fmt.Errorf("%w: nothing is mounted at %s", ErrUseUnknown, abs)
	}
	m := ms[len(ms)-1] // the one on top
	return view{id: m.ID, major: m.Major, minor: m.Minor, root: m.Root, peers: peerGroup(m.Optional)}, nil
}

// peerGroup returns the "shared:N" field of a mount's optional fields, or "".
func peerGroup(optional string) string {
	for _, f := range strings.Fields(optional) {
		if strings.HasPrefix(f, "shared:") {
			return f
		}
	}
	return ""
}

// scanUsers reads the mount table of every process under proc and reports whether one
// of them holds a mount of self's tree that is no view of drayage's.
func scanUsers(proc string, self view) (bool, error) {
	_, found, err := scan(proc, self, func(m *mountinfo.Info) bool { return uses(m, self) })
	return found, err
}

// scan reads the mount table of every process under proc (first the one numbered first,
// if it is not 0) until one holds a mount of self's tree that match accepts; it returns
// that process's number.
func scan(proc string, self view, match func(*mountinfo.Info) bool, first ...int) (int, bool, error) {
	entries, err := os.ReadDir(proc)
	if err != nil {
		return 0, false, fmt.Errorf("%w: %w", ErrUseUnknown, err)
	}
	pids := make([]int, 0, len(entries)+len(first))
	for _, pid := range first {
		if pid != 0 {
			pids = append(pids, pid)
		}
	}
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, pid)
		}
	}
	dev := []byte(fmt.Sprintf(" %d:%d ", self.major, self.minor))
	for _, pid := range pids {
		table, err := os.ReadFile(filepath.Join(proc, strconv.Itoa(pid), "mountinfo"))
		if gone(err) {
			continue
		}
		if err != nil {
			return 0, false, fmt.Errorf("%w: mounts of process %d: %w", ErrUseUnknown, pid, err)
		}
		if !bytes.Contains(table, dev) {
			continue // most tables: nothing on the volume's disk
		}
		ms, err := mountinfo.GetMountsFromReader(bytes.NewReader(table), nil)
		if err != nil {
			return 0, false, fmt.Errorf("%w: mounts of process %d: %w", ErrUseUnknown, pid, err)
		}
		for _, m := range ms {
			if m.ID != self.id && m.Major == self.major && m.Minor == self.minor && within(m.Root, self.root) && match(m) {
				return pid, true, nil
			}
		}
	}
	return 0, false, nil
}

// within tells whether path is root or inside it.
func within(path, root string) bool {
	return path == root || strings.HasPrefix(path, strings.TrimSuffix(root, "/")+"/")
}

// uses tells whether m, a mount of self's tree other than self, is a container's.
func uses(m *mountinfo.Info, self view) bool {
	return self.peers == "" || peerGroup(m.Optional) != self.peers
}

// gone tells whether err says a process exited while it was read (a zombie has no mount
// table: EINVAL).
func gone(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ESRCH) || errors.Is(err, unix.EINVAL)
}
