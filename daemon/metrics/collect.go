package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// scrapeTime collects the gauges read at scrape time.
type scrapeTime struct{ m *Metrics }

func (c scrapeTime) Describe(ch chan<- *prometheus.Desc) {
	ch <- volumesDesc
	ch <- membersDesc
	ch <- healthDesc
	ch <- quorumDesc
	ch <- replicaLagDesc
}

func (c scrapeTime) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.Lock()
	volumes, members, health, quorum, lags := c.m.volumeStates, c.m.members, c.m.gossipHealth, c.m.storeQuorum, c.m.replicaLags
	c.m.mu.Unlock()
	if lags != nil {
		collectReplicaLags(ch, lags)
	}
	if quorum != nil {
		ok, role := quorum()
		v := 0.0
		if ok {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(quorumDesc, prometheus.GaugeValue, v, role)
	}
	if volumes != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		counts := volumes(ctx)
		cancel()
		if counts != nil {
			gauges(ch, volumesDesc, VolumeStates, counts)
		}
	}
	if members != nil {
		gauges(ch, membersDesc, MemberStates, members())
	}
	if health != nil {
		ch <- prometheus.MustNewConstMetric(healthDesc, prometheus.GaugeValue, float64(health()))
	}
}

// gauges sends one gauge per state: the known ones (0 if absent), then any other.
func gauges(ch chan<- prometheus.Metric, desc *prometheus.Desc, known []string, counts map[string]int) {
	seen := map[string]bool{}
	for _, s := range known {
		seen[s] = true
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, float64(counts[s]), s)
	}
	for s, n := range counts {
		if !seen[s] {
			ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, float64(n), s)
		}
	}
}

var (
	volumesDesc = prometheus.NewDesc("drayage_volumes",
		"Volumes whose data is on this node, by state (mounted, idle), and pulls to this node running (pulling).", []string{"state"}, nil)
	membersDesc = prometheus.NewDesc("drayage_cluster_members",
		"Nodes in this node's gossip roster, this one included, by state (alive, dead, left).", []string{"state"}, nil)
	quorumDesc = prometheus.NewDesc("drayage_store_quorum",
		"1 while the embedded store's voting members have a leader as this node sees them, 0 when it has lost its quorum (nothing that needs the store can succeed); role is this node's part: voter, learner or client.", []string{"role"}, nil)
	healthDesc = prometheus.NewDesc("drayage_gossip_health_score",
		"Gossip's own health score (memberlist awareness): 0 is healthy; higher means this node misses probes' deadlines.", nil, nil)
)

// VolumeStates are the states drayage_volumes always reports, 0 if none.
var VolumeStates = []string{"mounted", "idle", "pulling"}

// MemberStates are the states drayage_cluster_members always reports, 0 if none.
var MemberStates = []string{"alive", "dead", "left"}
