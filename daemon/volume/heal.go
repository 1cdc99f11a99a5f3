package volume

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/daemon/localstore"
)

// healReplicas schedules a sync of each replicated volume of recs (volumes this node
// owns) that keeps fewer replicas than it should while a live node could hold one more:
// after a failover, or once a replica's node was down for DRAYAGE_REPLICA_REPLACE_AFTER.
// The sync places the missing replicas (placeReplicas) and fills them, resumably, in the
// background. An idle volume otherwise syncs only when something asks. One read of the
// store per call.
func (m *Manager) healReplicas(ctx context.Context, recs []localstore.Record) {
	p := m.currentPuller()
	if p == nil {
		return
	}
	var owned []localstore.Record
	for _, rec := range recs {
		if !rec.Pending && !rec.Replica() && m.replicated(rec.Options) {
			owned = append(owned, rec)
		}
	}
	if len(owned) == 0 {
		return
	}
	all, err := m.reg.AllReplicas(ctx)
	if err != nil {
		m.log.Warn("cannot read the replica records to check the replica counts; will retry", "node", m.cfg.Node, "err", err)
		return
	}
	peers := p.Peers()
	for _, rec := range owned {
		if m.missingReplicas(rec, all[rec.Name], peers) {
			m.log.Info("the volume keeps fewer replicas than it should, and a live node can hold one: syncing", "volume", rec.Name,
				"replicas", m.replicaCount(rec.Options)-1)
			m.scheduleSync(rec.Name, time.Now(), false)
		}
	}
}

// missingReplicas reports whether the volume of rec, with these replica records, lacks
// a current replica that one of peers could hold or bring up to date: a record counts if
// it is of rec's epoch and was synced at it (a former owner keeps its copy as a replica
// after a failover, recorded at the new epoch but never synced: found by the fault
// campaign, such a replica stayed stale while the volume was idle), and its node is
// alive, or was seen within DRAYAGE_REPLICA_REPLACE_AFTER.
func (m *Manager) missingReplicas(rec localstore.Record, rps []cluster.Replica, peers []Peer) bool {
	byName := map[string]Peer{}
	for _, p := range peers {
		byName[p.Name] = p
	}
	current := map[string]bool{m.cfg.Node: true}
	for _, rp := range rps {
		if p, ok := byName[rp.Node]; ok && rp.Epoch == rec.Epoch && !rp.Synced.IsZero() && (p.Alive || time.Since(p.LastSeen) < m.replicaReplaceAfter()) {
			current[rp.Node] = true
		}
	}
	if len(current)-1 >= m.replicaCount(rec.Options)-1 {
		return false
	}
	var pinned []string
	if v := rec.Options[optReplicaNodes]; v != "" {
		pinned = strings.Split(v, ",")
	}
	for _, p := range peers {
		if p.Alive && !current[p.Name] && (pinned == nil || slices.Contains(pinned, p.Name)) {
			return true
		}
	}
	return false
}
