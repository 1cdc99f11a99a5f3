package volume

import (
	"context"
	"fmt"
)

// BackupDir returns the directory of a volume this node holds, for a backup to read:
// only the owner backs a volume up (mounted or not: a backup reads each file as it was at
// one moment), never from a copy not yet committed or one still being filled. The
// volume is not held while the backup reads: a move that takes it away meanwhile fails
// the backup, which can be run again on the new owner.
func (m *Manager) BackupDir(ctx context.Context, name string) (string, error) {
	unlock, err := m.begin(ctx, name)
	if err != nil {
		return "", err
	}
	defer unlock()
	e, err := m.entry(ctx, name, "back up")
	if err != nil {
		return "", err
	}
	if e.Volume.Owner != m.cfg.Node {
		return "", fmt.Errorf("volume %q is held by node %q, not %q: %w; run the backup there", name, e.Volume.Owner, m.cfg.Node, ErrElsewhere)
	}
	rec, err := m.disk.Load(name)
	if err != nil {
		return "", fmt.Errorf("volume %q on node %q: %w", name, m.cfg.Node, err)
	}
	if rec, err = m.current(rec, e); err != nil {
		return "", err
	}
	if err := m.filled(rec); err != nil {
		return "", err
	}
	return m.disk.DataDir(name), nil
}
