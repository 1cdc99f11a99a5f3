package localstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// A removal asked on this node is noted here before it is marked in the cluster store:
// the node that holds the volume deletes its copy only once the node the record names as
// the requester confirms the note (a record alone is no proof). Notes are kept for
// removalNoteTTL; an owner that comes back later than that asks in vain, and the removal
// is confirmed by running it again.

// removalNoteTTL is how long a removal note is kept.
const removalNoteTTL = 30 * 24 * time.Hour

type removalNote struct {
	Volume string    `json:"volume"`
	Epoch  uint64    `json:"epoch"`
	At     time.Time `json:"at"`
}

func (s *Store) removalsDir() string { return filepath.Join(s.root, "removals") }

// NoteRemoval notes that the removal of volume name, at epoch, was asked on this node.
func (s *Store) NoteRemoval(name string, epoch uint64) error {
	b, err := json.Marshal(removalNote{Volume: name, Epoch: epoch, At: time.Now().UTC()})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(s.removalsDir(), 0o700); err != nil {
		return fmt.Errorf("note the removal of volume %q: %w", name, err)
	}
	tmp, err := os.CreateTemp(s.tmpDir(), name+".removal.")
	if err != nil {
		return fmt.Errorf("note the removal of volume %q: %w", name, err)
	}
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(s.removalsDir(), name))
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("note the removal of volume %q: %w", name, err)
	}
	return syncDir(s.removalsDir())
}

// RemovalNoted reports whether the removal of volume name at epoch was asked on this
// node.
func (s *Store) RemovalNoted(name string, epoch uint64) bool {
	b, err := os.ReadFile(filepath.Join(s.removalsDir(), name))
	if err != nil {
		return false
	}
	var n removalNote
	return json.Unmarshal(b, &n) == nil && n.Volume == name && n.Epoch == epoch
}

// pruneRemovals deletes removal notes older than removalNoteTTL.
func (s *Store) pruneRemovals() error {
	entries, err := os.ReadDir(s.removalsDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		fi, err := e.Info()
		if err == nil && time.Since(fi.ModTime()) > removalNoteTTL {
			_ = os.Remove(filepath.Join(s.removalsDir(), e.Name()))
		}
	}
	return nil
}
