package volume

import "context"

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
	if _, err := m.heldHere(ctx, name, "back up"); err != nil {
		return "", err
	}
	return m.disk.DataDir(name), nil
}
