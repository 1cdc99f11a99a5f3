package volume

import (
	"context"
	"fmt"
	"time"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/daemon/localstore"
)

// Create makes a volume, or returns the existing volume of that name wherever in the
// cluster it lives. Creating a volume that exists with the same options succeeds; with
// other options it fails with ErrOptionsConflict.
func (m *Manager) Create(ctx context.Context, name string, raw map[string]string) error {
	unlock, err := m.begin(ctx, name)
	if err != nil {
		return err
	}
	defer unlock()
	opts, canon, err := ParseOptions(raw)
	if err != nil {
		return fmt.Errorf("volume %q on node %q: %w", name, m.cfg.Node, err)
	}
	e, created, err := m.reg.Create(ctx, cluster.Volume{Name: name, Owner: m.cfg.Node, Options: canon, Created: time.Now().UTC()})
	if err != nil {
		return m.storeErr("create volume "+name, err)
	}
	v := e.Volume
	if !created {
		if v.Removing {
			return fmt.Errorf("volume %q is being removed from node %q; retry once it is gone, or choose another name", name, v.Owner)
		}
		return m.checkSameOptions(v, opts, canon)
	}
	filling := opts.From != ""
	if err := m.disk.Create(localstore.Record{Name: name, Options: canon, Created: v.Created, Epoch: v.Epoch, Filling: filling}, opts.UID, opts.GID, opts.Mode); err != nil {
		if rmErr := m.reg.FinishRemoval(ctx, v); rmErr != nil {
			m.log.Error("cannot undo the cluster record of a volume whose creation failed", "volume", name, "err", rmErr)
		}
		return fmt.Errorf("node %q: %w", m.cfg.Node, err)
	}
	m.log.Info("created volume", "volume", name, "options", formatOptions(canon))
	if filling {
		m.startSeed(ctx, e)
		return nil
	}
	if m.replicated(canon) {
		m.scheduleSync(name, time.Now(), false)
	}
	return nil
}

func (m *Manager) checkSameOptions(existing cluster.Volume, want Options, wantCanon map[string]string) error {
	have, _, err := ParseOptions(existing.Options)
	if err != nil {
		return fmt.Errorf("volume %q on node %q has unreadable options: %w", existing.Name, existing.Owner, err)
	}
	if have != want {
		return fmt.Errorf("volume %q on node %q: %w: it has %s, this request has %s; create it with the same options, or remove it first",
			existing.Name, existing.Owner, ErrOptionsConflict, formatOptions(existing.Options), formatOptions(wantCanon))
	}
	return nil
}
