package daemon

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/cluster/gossip"
	"github.com/drayage/drayage/protocol"
)

// The version of the cluster store's records (cluster/schema.go). A node checks it
// before it serves anything, and again every schemaEvery: records of a version it does
// not speak stop it with an error naming both versions and what to do. At the same
// times it raises them (cluster/migrate.go) to the newest version every node speaks:
// this one, every member gossip sees alive, and every node the store heard from within
// schemaHorizon, so a node rebooting or being upgraded holds the raise back.

const (
	schemaEvery   = 30 * time.Second
	schemaHorizon = 24 * time.Hour
)

// keepSchema checks and raises the records' version now and every schemaEvery until ctx
// ends. It returns the error that must stop the node: records it does not speak.
func (d *Daemon) keepSchema(ctx context.Context, reg *cluster.Registry, store cluster.Store) error {
	t := time.NewTicker(schemaEvery)
	defer t.Stop()
	for {
		if err := d.checkSchema(ctx, reg, store); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// checkSchema reads the records' version once, and raises it if every node speaks a
// newer one. Only records this node does not speak are returned as an error; the rest
// is logged and tried again next time.
func (d *Daemon) checkSchema(ctx context.Context, reg *cluster.Registry, store cluster.Store) error {
	own := protocol.Own()
	s, err := reg.CheckSchema(ctx, d.cfg.Name, own)
	switch {
	case errors.Is(err, cluster.ErrSchemaTooNew), errors.Is(err, cluster.ErrSchemaTooOld):
		return err
	case err != nil:
		d.log.Debug("cannot read the version of the cluster store's records; trying again later", "err", err)
		return nil
	}
	if s.Version >= own.Newest {
		return nil // nothing this node could raise them to: no need to read every node's record
	}
	var members []gossip.Member
	if nw := d.net.Load(); nw != nil {
		members = nw.gossip.Members()
	}
	records, err := reg.Nodes(ctx)
	if err != nil {
		return nil
	}
	to, behind := schemaTarget(d.cfg.Name, own, members, records, time.Now())
	if to <= s.Version {
		if len(behind) > 0 {
			d.log.Debug("the cluster store's records stay at their version until these nodes speak a newer one",
				"records", s.Version, "nodes", strings.Join(behind, ","))
		}
		return nil
	}
	lease, err := store.Grant(ctx, d.cfg.LeaseTTL)
	if err != nil {
		return nil
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = lease.Close(cctx)
	}()
	got, raised, err := reg.RaiseSchema(ctx, d.cfg.Name, to, lease, cluster.Migrations())
	switch {
	case errors.Is(err, cluster.ErrRaising):
		d.log.Debug("another node raises the version of the cluster store's records", "err", err)
	case err != nil:
		d.log.Warn("cannot raise the version of the cluster store's records; trying again later", "from", s.Version, "to", to, "err", err)
	case !raised:
		d.log.Debug("another node raised the version of the cluster store's records", "to", got.Version, "by", got.By)
	default:
		d.log.Info("raised the version of the cluster store's records: every node speaks it; nodes of older releases are refused from now on",
			"from", s.Version, "to", got.Version)
	}
	return nil
}

// schemaTarget is the newest protocol version that own (node self's range), every member
// alive and every other node's record seen within schemaHorizon of now all speak, and the
// names of the nodes whose newest is below own's.
func schemaTarget(self string, own protocol.Range, members []gossip.Member, records []cluster.Node, now time.Time) (int, []string) {
	to := own.Newest
	behind := map[string]bool{}
	consider := func(name, speaks string) {
		r, err := protocol.Parse(speaks)
		if err != nil {
			to = 0 // a range this release can't read: raise nothing
			behind[name] = true
			return
		}
		if r.Newest < own.Newest {
			behind[name] = true
		}
		to = min(to, r.Newest)
	}
	for _, m := range members {
		if m.State == gossip.StateAlive {
			consider(m.Name, m.Meta.Protocol)
		}
	}
	for _, n := range records {
		if n.Name != self && now.Sub(n.LastSeen) <= schemaHorizon {
			consider(n.Name, n.Protocol)
		}
	}
	names := make([]string, 0, len(behind))
	for name := range behind {
		names = append(names, name)
	}
	slices.Sort(names)
	return to, names
}
