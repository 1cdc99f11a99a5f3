package daemon

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/cluster/gossip"
	"github.com/drayage/drayage/protocol"
)

// The records are raised to the newest version that this node, every member alive and
// every node the store heard from within a day speak; a member that is dead, a record of
// this node's last run and a node not seen for over a day hold nothing back.
func TestTheRecordsAreRaisedToWhatEveryNodeSpeaks(t *testing.T) {
	now := time.Now()
	own := protocol.Range{Oldest: 1, Newest: 2}
	members := []gossip.Member{
		{Name: "node-a", State: gossip.StateAlive, Meta: gossip.Meta{Protocol: "1-2"}},
		{Name: "node-b", State: gossip.StateAlive, Meta: gossip.Meta{Protocol: "1-3"}},
		{Name: "node-d", State: gossip.StateDead, Meta: gossip.Meta{Protocol: "1"}},
	}
	records := []cluster.Node{
		{Name: "node-a", Protocol: "1", LastSeen: now}, // this node's record of its last run
		{Name: "node-c", Protocol: "1-2", LastSeen: now.Add(-time.Hour)},
		{Name: "node-e", LastSeen: now.Add(-25 * time.Hour)}, // a release before protocols were recorded
	}
	to, behind := schemaTarget("node-a", own, members, records, now)
	assert.Equal(t, 2, to)
	assert.Empty(t, behind)

	records[2].LastSeen = now.Add(-2 * time.Hour)
	to, behind = schemaTarget("node-a", own, members, records, now)
	assert.Equal(t, 1, to, "node-e, seen two hours ago, speaks only 1")
	assert.Equal(t, []string{"node-e"}, behind)

	members[1].Meta.Protocol = "garbage"
	to, behind = schemaTarget("node-a", own, members, records, now)
	assert.Equal(t, 0, to, "a range this release can't read raises nothing")
	assert.Equal(t, []string{"node-b", "node-e"}, behind)
}
