// Package mounttest provides a fake mount.Mounter for tests that can't make real mounts.
package mounttest

import (
	"sync"

	"github.com/drayage/drayage/daemon/mount"
)

// Fake records bind mounts instead of making them. Set Fail to make Bind fail.
type Fake struct {
	mu      sync.Mutex
	mounts  map[string]string // target -> source
	options map[string]mount.Options
	fail    error
	use     map[string]use // what InUse reports of each target
	// unpropagated is what Propagated fails with (nil: it succeeds).
	unpropagated error
}

// use is what InUse reports of a target: unknown until Use says.
type use struct {
	told, used bool
	err        error
}

var _ mount.Mounter = (*Fake)(nil)

// New returns a Fake with nothing mounted.
func New() *Fake { return &Fake{mounts: map[string]string{}, options: map[string]mount.Options{}} }

// Fail makes every later Bind return err (nil to stop failing).
func (f *Fake) Fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = err
}

// Bind records target as showing source, mounted as o says.
func (f *Fake) Bind(source, target string, o mount.Options) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	f.mounts[target] = source
	f.options[target] = o
	return nil
}

// Options returns how target was mounted.
func (f *Fake) Options(target string) mount.Options {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.options[target]
}

// Unbind forgets target.
func (f *Fake) Unbind(target string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.mounts, target)
	return nil
}

// Mounted reports whether target was bound.
func (f *Fake) Mounted(target string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.mounts[target]
	return ok, nil
}

// Use says whether a container uses the mount at target: InUse reports it, or fails
// with err if err is not nil. Until Use is called for a target, InUse fails with
// mount.ErrUseUnknown, as it does where the daemon can't see the host's processes.
func (f *Fake) Use(target string, used bool, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.use == nil {
		f.use = map[string]use{}
	}
	f.use[target] = use{told: true, used: used, err: err}
}

// InUse reports what Use said of target.
func (f *Fake) InUse(target string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	u := f.use[target]
	if !u.told {
		return false, mount.ErrUseUnknown
	}
	return u.used, u.err
}

// Unpropagate makes Propagated fail with err from now on (nil: succeed again).
func (f *Fake) Unpropagate(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unpropagated = err
}

// Propagated fails as Unpropagate said, if target is bound.
func (f *Fake) Propagated(target string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.mounts[target]; !ok {
		return mount.ErrUseUnknown
	}
	return f.unpropagated
}

// Source returns what target shows, or "" if nothing is bound there.
func (f *Fake) Source(target string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mounts[target]
}

// Count is the number of active bind mounts.
func (f *Fake) Count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.mounts)
}
