package daemon

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/cluster/backends"
	"github.com/drayage/drayage/daemon/control"
	"github.com/drayage/drayage/daemon/volume"
	"github.com/drayage/drayage/progress"
)

// statusTimeout bounds each read of the cluster store that Status makes, so that a store
// that does not answer shows in the status instead of hanging it.
const statusTimeout = 2 * time.Second

// Status gathers what 'drayage status' shows. It reads the cluster store with a timeout
// and reports a store that does not answer in Store; it fails only if ctx ends.
func (d *Daemon) Status(ctx context.Context) (control.Status, error) {
	s := control.Status{
		Node: control.NodeStatus{
			Name: d.cfg.Name, Version: d.cfg.Version, Root: d.cfg.Root,
			Started: d.started.UTC(), UptimeSeconds: int64(time.Since(d.started).Seconds()),
		},
		Store:     d.storeStatus(ctx),
		Transfers: []control.TransferStatus{},
	}
	if n := d.net.Load(); n != nil {
		s.Node.Cluster, s.Node.Gossip, s.Node.Control, s.Node.Data = d.cfg.Cluster, n.gossip.Addr(), n.control, n.data
	}

	var wg sync.WaitGroup
	var infos []volume.Info
	var listErr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		sctx, cancel := context.WithTimeout(ctx, statusTimeout)
		defer cancel()
		s.Members = sortedNodes(d.roster(sctx))
	}()
	go func() {
		defer wg.Done()
		sctx, cancel := context.WithTimeout(ctx, statusTimeout)
		defer cancel()
		infos, listErr = d.vols.List(sctx)
	}()
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return s, err
	}
	s.Volumes = countHeld(infos, d.cfg.Name)
	for _, info := range infos {
		if from, ok := volume.DivergedFrom(info.Name); ok {
			s.Warnings = append(s.Warnings, fmt.Sprintf("volume %s on node %s holds writes a failover of volume %s left behind: compare the two, keep what you need, then remove it (docker volume rm %s)",
				info.Name, info.Node, from, info.Name))
		}
	}
	if listErr != nil {
		d.log.Warn("status: cannot list volumes", "err", listErr)
	}
	s.Transfers = append(s.Transfers, d.incoming()...)
	s.Transfers = append(s.Transfers, d.outgoing(ctx)...)
	return s, nil
}

// storeStatus times a read of this node's record in the cluster store.
func (d *Daemon) storeStatus(ctx context.Context) control.StoreStatus {
	st := control.StoreStatus{Prefix: d.cfg.StorePrefix}
	if spec, err := backends.Parse(d.cfg.Store); err == nil {
		st.Kind, st.Endpoints = spec.Kind, spec.Endpoints
	}
	if d.reg == nil {
		st.Error = "not connected yet"
		return st
	}
	sctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	if es := d.embedded.Load(); es != nil {
		q := es.Quorum(sctx)
		st.Role, st.Quorum = es.Role(), &q
	}
	start := time.Now()
	_, err := d.reg.Node(sctx, d.cfg.Name)
	st.LatencyMS = float64(time.Since(start).Microseconds()) / 1000
	switch {
	case err == nil, errors.Is(err, cluster.ErrNotFound): // the store answered
		st.OK = true
		if s, err := d.reg.Schema(sctx); err == nil {
			st.Records = s.Version
		}
	case sctx.Err() != nil && ctx.Err() == nil:
		st.Error = "no answer within " + statusTimeout.String() + ": " + err.Error()
	default:
		st.Error = err.Error()
	}
	return st
}

// countHeld counts the volumes node holds, by state.
func countHeld(infos []volume.Info, node string) control.VolumeCounts {
	c := control.VolumeCounts{ByState: map[string]int{}}
	for _, info := range infos {
		if info.Node != node {
			continue
		}
		c.Total++
		c.ByState[info.State]++
	}
	return c
}

// incoming lists the transfers to this node.
func (d *Daemon) incoming() []control.TransferStatus {
	var out []control.TransferStatus
	for _, t := range d.vols.Receiving() {
		out = append(out, control.TransferStatus{Transfer: t, Direction: control.DirectionIn, Peer: t.From})
	}
	return out
}

// outgoing lists the transfers this node sends. The bytes sent are counted here; the
// total (what the receiver asked for) and the kind come from the progress the receiver
// records in the cluster store.
func (d *Daemon) outgoing(ctx context.Context) []control.TransferStatus {
	n := d.net.Load()
	if n == nil {
		return nil
	}
	var out []control.TransferStatus
	for _, t := range n.sender.Sending() {
		ts := control.TransferStatus{Direction: control.DirectionOut, Peer: t.Peer, ID: t.ID,
			Transfer: progress.Transfer{Volume: t.Volume, From: d.cfg.Name, To: t.Peer, Counts: progress.Counts{Bytes: t.Bytes},
				Started: t.Started.UTC(), Updated: time.Now().UTC()}}
		if d.reg != nil {
			sctx, cancel := context.WithTimeout(ctx, statusTimeout)
			p, err := d.reg.Progress(sctx, t.Volume)
			cancel()
			if err == nil && p != nil && p.To == t.Peer {
				ts.Kind, ts.Copy, ts.Total = p.Kind, p.Copy, p.Total
			}
		}
		out = append(out, ts)
	}
	return out
}
