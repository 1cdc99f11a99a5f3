package volume

import (
	"context"
	"maps"
	"time"

	"github.com/drayage/drayage/daemon/localstore"
)

// Mounts that died with their engine.
//
// A daemon that starts restores the mounts its records hold (Init). After a restart of
// the plugin alone, their containers live on and the engine unmounts each in due time.
// After a crash of the engine or of the whole node, the containers died with it and no
// Unmount ever comes (moby cleans a dead container up before it knows its volumes): the
// volume would stay mounted here, and held, for good. So the daemon watches the mounts it
// restored: once no container has had the volume mounted for deadMountGrace, checked
// every deadMountCheck, the restored mount IDs are released as the engine's Unmounts
// would have been. Mount IDs of this run are left to the engine.
//
// The grace covers a container whose Mount was answered just before the daemon died and
// that the engine starts a moment later. Where the daemon can't see which containers
// use a mount (a plugin without pidhost), restored mounts stay until the engine unmounts
// them, as before. (Variables for the tests.)
var (
	deadMountCheck   = 5 * time.Second
	deadMountGrace   = 20 * time.Second
	deadMountRecheck = time.Minute // for a volume a container was seen to use
)

// watchRestoredMounts releases the restored mount IDs of ids (volume -> mount ID -> its
// count) whose containers are gone; it returns when none is left or ctx ends.
func (m *Manager) watchRestoredMounts(ctx context.Context, ids map[string]map[string]int) {
	unusedSince := map[string]time.Time{}
	next := map[string]time.Time{}
	told := map[string]bool{}
	tick := time.NewTicker(deadMountCheck)
	defer tick.Stop()
	for len(ids) > 0 {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		for name, restored := range ids {
			if now.Before(next[name]) {
				continue
			}
			if !m.stillRestored(name, restored) {
				delete(ids, name) // the engine unmounted them
				continue
			}
			used, err := m.cfg.Mounter.InUse(m.mountpoint(name))
			switch {
			case err != nil:
				if !told[name] {
					m.log.Info("cannot tell whether a container still uses a mount restored at start; it stays until the engine unmounts it",
						"volume", name, "node", m.cfg.Node, "err", err)
					told[name] = true
				}
				delete(unusedSince, name)
				next[name] = now.Add(deadMountRecheck)
			case used:
				delete(unusedSince, name)
				next[name] = now.Add(deadMountRecheck)
			case unusedSince[name].IsZero():
				unusedSince[name] = now
			case now.Sub(unusedSince[name]) >= deadMountGrace:
				if m.releaseRestored(ctx, name, restored) {
					delete(ids, name)
				}
			}
		}
	}
}

// stillRestored tells whether volume name's record still holds one of the restored mount
// IDs, and forgets those it no longer holds.
func (m *Manager) stillRestored(name string, restored map[string]int) bool {
	rec, err := m.disk.Load(name)
	if err != nil {
		return false
	}
	for id, n := range restored {
		switch left := rec.Mounts[id]; {
		case left == 0:
			delete(restored, id)
		case left < n:
			restored[id] = left
		}
	}
	return len(restored) > 0
}

// releaseRestored unmounts the restored mount IDs of volume name, as many times as each
// was mounted, and says whether all of them are gone.
func (m *Manager) releaseRestored(ctx context.Context, name string, restored map[string]int) bool {
	m.log.Warn("no container uses this volume any more, but its mounts from before the daemon's restart were never unmounted (the engine or the node crashed): releasing them, the volume is free to move",
		"volume", name, "node", m.cfg.Node, "mounts", len(restored))
	for id := range restored {
		for restored[id] > 0 {
			if _, err := m.unmount(ctx, name, id); err != nil {
				m.log.Warn("cannot release a dead mount now; will retry", "volume", name, "node", m.cfg.Node, "id", id, "err", err)
				return false
			}
			restored[id]--
		}
		delete(restored, id)
	}
	return true
}

// restoredIDs returns the mount IDs of the records whose mounts Init restored.
func restoredIDs(recs []localstore.Record, restored map[string]bool) map[string]map[string]int {
	ids := map[string]map[string]int{}
	for _, rec := range recs {
		if !restored[rec.Name] {
			continue
		}
		ids[rec.Name] = maps.Clone(rec.Mounts)
	}
	return ids
}
