package mount

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/moby/sys/mountinfo"
)

// ErrNotPropagated says that a bind the daemon made is not seen by the engine: the mount
// dir no longer propagates to the engine's namespace.
var ErrNotPropagated = errors.New("the engine does not see the plugin's mounts")

// engineHint is the process whose mount table last showed a propagated copy of a bind
// (the engine's namespace): read first next time, so a check reads one table, not all.
var engineHint atomic.Int64

// Propagated fails with ErrNotPropagated unless the bind at target has a copy in another
// mount namespace that shares its peer group: the engine's view of it, through the
// managed plugin's propagated mount. A container started on a bind the engine can't see
// would get the empty directory under it, and write there instead of into the volume.
// The fault campaign saw that once, after two plugin restarts raced on one engine.
func (Bind) Propagated(target string) error {
	self, err := selfView(target)
	if err != nil {
		return err
	}
	if self.peers == "" {
		return fmt.Errorf("%w: the bind at %s propagates nowhere: the mount dir is not shared with the engine", ErrNotPropagated, target)
	}
	pid, found, err := scan("/proc", self, func(m *mountinfo.Info) bool { return peerGroup(m.Optional) == self.peers }, int(engineHint.Load()))
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("%w: no other mount namespace shows the bind at %s", ErrNotPropagated, target)
	}
	engineHint.Store(int64(pid))
	return nil
}
