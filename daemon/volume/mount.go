package volume

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/daemon/localstore"
	"github.com/drayage/drayage/daemon/metrics"
	"github.com/drayage/drayage/daemon/mount"
)

// recordSize measures a volume no longer in use and records its size in the cluster,
// under the owner's epoch (refused if ownership moved on meanwhile).
func (m *Manager) recordSize(ctx context.Context, name string, epoch uint64) {
	unlock := m.locks.Lock(name)
	defer unlock()
	size, err := m.disk.Size(name)
	if err != nil {
		return
	}
	if err := m.reg.UpdateSize(ctx, name, m.cfg.Node, epoch, size); err != nil && !errors.Is(err, cluster.ErrStaleEpoch) {
		m.log.Warn("cannot record the volume's size in the cluster store", "volume", name, "err", err)
	}
}

// sweepMountDir removes mountpoints left from volumes that are no longer mounted.
func (m *Manager) sweepMountDir(inUse map[string]bool) {
	entries, err := os.ReadDir(m.cfg.MountDir)
	if err != nil {
		m.log.Warn("cannot read mount dir", "dir", m.cfg.MountDir, "err", err)
		return
	}
	for _, e := range entries {
		if inUse[e.Name()] {
			continue
		}
		if err := m.unbind(e.Name()); err != nil {
			m.log.Warn("cannot remove stale mountpoint", "volume", e.Name(), "err", err)
		}
	}
}

// Mount takes one reference on the volume for the given mount ID and returns the
// mountpoint. The first reference claims the volume in the cluster and makes the bind
// mount. A volume held by another node is pulled here first, in the background: if it
// has not arrived when ctx is nearly done, Mount returns ErrPulling with the progress and
// the next Mount waits on the same pull. A failed Mount changes nothing.
func (m *Manager) Mount(ctx context.Context, name, id string) (string, error) {
	start := time.Now()
	mp, err := m.mount(ctx, name, id)
	result := metrics.MountOK
	switch {
	case errors.Is(err, ErrPulling):
		result = metrics.MountPulling
	case err != nil:
		result = metrics.MountError
	}
	m.cfg.Metrics.Mount(time.Since(start), result)
	return mp, err
}

func (m *Manager) mount(ctx context.Context, name, id string) (string, error) {
	for pulled := false; ; pulled = true {
		unlock, err := m.begin(ctx, name)
		if err != nil {
			return "", err
		}
		e, err := m.settledEntry(ctx, name, "mount")
		if err != nil {
			if pulled {
				m.releaseIdle(ctx, name) // what the pull left for this Mount
			}
			unlock()
			return "", err
		}
		if !pulled {
			if e, err = m.promoteIfOwnerDown(ctx, e); err != nil {
				unlock()
				return "", err
			}
		}
		if e.Volume.Owner == m.cfg.Node {
			mp, err := m.mountHere(ctx, e, id)
			if errors.As(err, new(stillFilling)) && !pulled { // wait for the fill, then mount
				j, err := m.joinSeed(ctx, e)
				unlock()
				if err != nil {
					return "", err
				}
				if err := m.await(ctx, j, mountHint); err != nil {
					return "", err
				}
				continue
			}
			if err == nil {
				m.mountsSeen(name)
			}
			if err != nil && pulled {
				m.releaseIdle(ctx, name) // what the pull left for this Mount
			}
			unlock()
			return mp, err
		}
		if c := e.Claim; c != nil && c.Kind == cluster.ClaimSeed && !pulled {
			unlock()
			if err := m.awaitFill(ctx, e); err != nil {
				return "", err
			}
			return m.mount(ctx, name, id) // filled: as if it had been all along
		}
		if pulled {
			unlock()
			return "", tell(ErrElsewhere, "volume %q moved on to node %q as soon as it arrived on node %q; run the container there, or retry",
				name, e.Volume.Owner, m.cfg.Node)
		}
		j, err := m.joinPull(ctx, e, pullOptions{limit: m.cfg.DynamicLimit})
		unlock()
		if err != nil {
			return "", err
		}
		if err := m.await(ctx, j, mountHint); err != nil {
			return "", err
		}
	}
}

// mountHere takes one reference on a volume this node holds, as record e says. The
// caller holds the lock.
func (m *Manager) mountHere(ctx context.Context, e cluster.Entry, id string) (string, error) {
	name := e.Volume.Name
	rec, err := m.disk.Load(name)
	if err != nil {
		return "", fmt.Errorf("volume %q is held by node %q in the cluster record, but its data is not in %s: %w; check the state dir",
			name, m.cfg.Node, m.cfg.Root, err)
	}
	if rec, err = m.current(rec, e); err != nil {
		return "", err
	}
	if err := m.filled(rec); err != nil {
		return "", err
	}
	count := rec.MountCount() + 1
	c, err := m.reg.ClaimMountOf(ctx, e, m.cfg.Node, m.currentLease(), count)
	if err != nil {
		if errors.Is(err, cluster.ErrRemoving) {
			return "", fmt.Errorf("volume %q on node %q: %w; retry when it is done", name, m.cfg.Node, err)
		}
		return "", m.refused(ctx, name, "mount", "retry when it is done", err)
	}
	undoClaim := func() {
		if count == 1 {
			_ = m.reg.Release(ctx, c)
			m.setClaim(name, nil)
		} else if c, err := m.reg.ClaimMount(ctx, name, m.cfg.Node, m.currentLease(), count-1); err == nil {
			m.setClaim(name, c)
		}
	}
	m.setClaim(name, c)
	if count == 1 {
		if err := m.bind(rec); err != nil {
			undoClaim()
			return "", fmt.Errorf("volume %q on node %q: %w; check the daemon log and that drayage has CAP_SYS_ADMIN", name, m.cfg.Node, err)
		}
		if m.replicated(e.Volume.Options) {
			m.recheck(name, time.Now().Add(m.syncInterval(e.Volume.Options)))
		}
	}
	if err := m.checkPropagated(name); err != nil {
		if count == 1 {
			_ = m.unbind(name)
		}
		undoClaim()
		return "", err
	}
	next := rec.Clone()
	if next.Mounts == nil {
		next.Mounts = make(map[string]int)
	}
	next.Mounts[id]++
	if err := m.disk.Save(next); err != nil {
		if count == 1 {
			_ = m.unbind(name)
		}
		undoClaim()
		return "", fmt.Errorf("node %q: %w", m.cfg.Node, err)
	}
	m.log.Info("mounted volume", "volume", name, "id", id, "mounts", next.MountCount())
	return m.mountpoint(name), nil
}

// Unmount drops one reference of the given mount ID; the last reference removes the bind
// mount and releases the claim. Unmounting an ID or a volume that is not mounted does
// nothing. A store that can't be reached does not fail it: Reconcile settles the claim.
func (m *Manager) Unmount(ctx context.Context, name, id string) error {
	synced, err := m.unmount(ctx, name, id)
	if err != nil || synced == nil {
		return err
	}
	// The volume's replicas get what its last container wrote before the engine hears
	// that it is unmounted: a container started next on a replica's node pulls only what
	// a sync did not bring.
	wait, cancel := context.WithTimeout(ctx, unmountSyncWait)
	defer cancel()
	select {
	case err := <-synced:
		if err != nil {
			m.log.Warn("the volume's replicas did not get its last writes at unmount; they get them at the next sync", "volume", name, "err", err)
		}
	case <-wait.Done():
		m.log.Warn("unmounted before the volume's replicas synced; the sync goes on", "volume", name, "waited", unmountSyncWait)
	}
	return nil
}

// unmount is Unmount under the volume's lock. For the last reference of a replicated
// volume it returns a channel that hears the outcome of the replica sync it asked for.
func (m *Manager) unmount(ctx context.Context, name, id string) (<-chan error, error) {
	unlock, err := m.begin(ctx, name)
	if err != nil {
		return nil, err
	}
	defer unlock()
	rec, err := m.disk.Load(name)
	if errors.Is(err, localstore.ErrNotExist) {
		m.log.Debug("unmount of unknown volume ignored", "volume", name, "id", id)
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("node %q: %w", m.cfg.Node, err)
	}
	if rec.Mounts[id] == 0 {
		m.log.Debug("unmount of unknown mount ID ignored", "volume", name, "id", id)
		return nil, nil
	}
	next := rec.Clone()
	next.Mounts[id]--
	if next.Mounts[id] == 0 {
		delete(next.Mounts, id)
	}
	count := next.MountCount()
	if count == 0 {
		if err := m.unbind(name); err != nil {
			return nil, fmt.Errorf("volume %q on node %q: %w; the volume stays mounted, check what holds %s busy", name, m.cfg.Node, err, m.mountpoint(name))
		}
	}
	if err := m.disk.Save(next); err != nil {
		// The engine does not ask again: a mount left in the record would hold the
		// volume here for ever (a full disk; found by the fault campaign).
		m.retryUnmount(name, id)
		return nil, fmt.Errorf("volume %q on node %q: record the unmount: %w; retried every %s until it is recorded (free space in the state dir)", name, m.cfg.Node, err, unmountRetry)
	}
	m.mountsSeen(name)
	switch c := m.claim(name); {
	case count == 0 && c != nil:
		if err := m.reg.Release(ctx, c); err != nil {
			m.log.Warn("cannot release the volume's claim now; will retry", "volume", name, "err", err)
		} else {
			m.setClaim(name, nil)
		}
		m.goBackground(func(ctx context.Context) { m.recordSize(ctx, name, c.Epoch) })
	case count > 0:
		if c, err := m.reg.ClaimMount(ctx, name, m.cfg.Node, m.currentLease(), count); err != nil {
			m.log.Warn("cannot update the volume's claim now; will retry", "volume", name, "err", err)
		} else {
			m.setClaim(name, c)
		}
	}
	m.log.Info("unmounted volume", "volume", name, "id", id, "mounts", count)
	if count == 0 && m.replicated(rec.Options) {
		synced := m.scheduleSync(name, time.Now(), true)
		if c := m.currentChanges(); c != nil && !c.Pending(name) {
			// Nothing was written since the last sync (an engine mounts a volume at a
			// container's creation, and unmounts it at once): the replicas are as current
			// as they were. The sync runs all the same, unwaited for.
			return nil, nil
		}
		return synced, nil
	}
	return nil, nil
}

// Path returns the mountpoint of a volume mounted here, or "" if it is not.
func (m *Manager) Path(ctx context.Context, name string) (string, error) {
	unlock, err := m.begin(ctx, name)
	if err != nil {
		return "", err
	}
	defer unlock()
	rec, err := m.disk.Load(name)
	if errors.Is(err, localstore.ErrNotExist) {
		if _, err := m.entry(ctx, name, "find"); err != nil {
			return "", err
		}
		return "", nil // held elsewhere, not mounted here
	}
	if err != nil {
		return "", fmt.Errorf("node %q: %w", m.cfg.Node, err)
	}
	if rec.MountCount() == 0 {
		return "", nil
	}
	return m.mountpoint(name), nil
}

func (m *Manager) mountpoint(name string) string { return filepath.Join(m.cfg.MountDir, name) }

// bind makes the volume's mountpoint show its data, if it does not already: nosuid,nodev
// unless the volume allows privileged content.
func (m *Manager) bind(rec localstore.Record) error {
	name := rec.Name
	mp := m.mountpoint(name)
	if err := os.MkdirAll(mp, 0o755); err != nil {
		return fmt.Errorf("create mountpoint: %w", err)
	}
	mounted, err := m.cfg.Mounter.Mounted(mp)
	if err != nil {
		return err
	}
	if mounted {
		return nil
	}
	if err := m.cfg.Mounter.Bind(m.disk.DataDir(name), mp, mount.Options{Privileged: AllowsPrivileged(rec.Options)}); err != nil {
		_ = os.Remove(mp)
		return err
	}
	return nil
}

// checkPropagated refuses a Mount whose bind the engine would not see (a managed plugin
// whose propagated mount was torn down under it): the container would get the empty
// directory under the bind, and write there instead of into the volume.
func (m *Manager) checkPropagated(name string) error {
	if !m.cfg.MountPropagated {
		return nil
	}
	err := m.cfg.Mounter.Propagated(m.mountpoint(name))
	if errors.Is(err, mount.ErrNotPropagated) {
		m.log.Error("the engine does not see this plugin's mounts: no volume can be mounted here until the plugin restarts", "volume", name, "node", m.cfg.Node, "err", err)
		return fmt.Errorf("volume %q on node %q: %w: restart the plugin on this node ('docker plugin disable -f NAME && docker plugin enable NAME', NAME as 'docker plugin ls' shows it; one restart at a time), then start the container again", name, m.cfg.Node, err)
	}
	if err != nil {
		m.log.Debug("cannot tell whether the engine sees the bind; mounted all the same", "volume", name, "err", err)
	}
	return nil
}

// unbind removes the volume's bind mount and mountpoint.
func (m *Manager) unbind(name string) error {
	mp := m.mountpoint(name)
	mounted, err := m.cfg.Mounter.Mounted(mp)
	if err != nil {
		return err
	}
	if mounted {
		if err := m.cfg.Mounter.Unbind(mp); err != nil {
			return err
		}
	}
	if err := os.Remove(mp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove mountpoint: %w", err)
	}
	return nil
}

// unmountRetry is how often an unmount that could not be recorded is tried again.
const unmountRetry = 2 * time.Second

// retryUnmount records an unmount the engine will not ask for again, once the state dir
// lets it: in the background, unmountRetry from now, unless the mount ID is gone by then
// (an unmount recorded meanwhile, a removal) or the manager closes. An attempt that fails
// to record it again schedules the next.
func (m *Manager) retryUnmount(name, id string) {
	m.goBackground(func(ctx context.Context) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(unmountRetry):
		}
		if rec, err := m.disk.Load(name); err != nil || rec.Mounts[id] == 0 {
			return
		}
		if _, err := m.unmount(ctx, name, id); err == nil {
			m.log.Info("recorded an unmount that failed before", "volume", name, "id", id)
		}
	})
}
