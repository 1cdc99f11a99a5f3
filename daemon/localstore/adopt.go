package localstore

import (
	"fmt"
	"time"

	"github.com/drayage/drayage/daemon/transfer"
)

// Adopt makes this node's replica of a volume the volume itself, at epoch: a failover
// promoted it (cluster.Registry.Promote). The replica's tree stays where it is; its
// record of the tree goes first, since containers will write it, and its staging tree,
// which was its next sync's start, after.
func (s *Store) Adopt(name string, epoch uint64) (Record, error) {
	rec, err := s.Load(name)
	if err != nil {
		return Record{}, err
	}
	if !rec.Replica() {
		return Record{}, fmt.Errorf("adopt volume %q: this node's copy is not a replica", name)
	}
	if err := transfer.DropTree(s.DataDir(name)); err != nil {
		return Record{}, fmt.Errorf("adopt volume %q: %w", name, err)
	}
	rec.MovedTo, rec.MovedAt, rec.Synced, rec.Epoch = "", 0, time.Time{}, epoch
	if err := s.Save(rec); err != nil {
		return Record{}, fmt.Errorf("adopt volume %q: %w", name, err)
	}
	s.DropStaging(name)
	return rec, nil
}
