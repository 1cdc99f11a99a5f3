package main

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/daemon/control"
	"github.com/drayage/drayage/progress"
)

var now = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func clusterStatus() control.Status {
	return control.Status{
		Node: control.NodeStatus{Name: "node-a", Version: "1.2.3", Cluster: "drayage", Gossip: "10.0.0.11:7790",
			Control: "10.0.0.11:7791", Data: "10.0.0.11:7792", Root: "/var/lib/drayage",
			Started: now.Add(-3*time.Hour - 12*time.Minute), UptimeSeconds: 3*3600 + 12*60},
		Store: control.StoreStatus{Kind: "etcd", Endpoints: []string{"10.0.0.9:2379", "10.0.0.10:2379"}, Prefix: "drayage/", OK: true, LatencyMS: 1.53, Records: 1},
		Members: []control.NodeInfo{
			{Name: "node-a", Address: "10.0.0.11:7790", State: "alive", Version: "1.2.3", LastSeen: now, Self: true},
			{Name: "node-b", Address: "10.0.0.12:7790", State: "dead", Version: "1.2.2", LastSeen: now.Add(-90 * time.Second)},
		},
		Volumes: control.VolumeCounts{Total: 3, ByState: map[string]int{"idle": 2, "mounted": 1}},
		Transfers: []control.TransferStatus{
			{Direction: control.DirectionIn, Peer: "node-b", Transfer: progress.Transfer{Volume: "db", Kind: "move", From: "node-b", To: "node-a",
				Counts: progress.Counts{Bytes: 21 * (1 << 30) / 10, Total: 5 << 30, Files: 3, TotalFiles: 7}, Started: now.Add(-20 * time.Second),
				Updated: now.Add(-20*time.Second + 17920*time.Millisecond)}}, // 120 MiB/s
			{Direction: control.DirectionOut, Peer: "node-c", ID: "9f2c", Transfer: progress.Transfer{Volume: "logs", Kind: "copy", Copy: "logs2",
				From: "node-a", To: "node-c", Counts: progress.Counts{Bytes: 1 << 20}, Started: now.Add(-2 * time.Second), Updated: now}},
		},
	}
}

func TestStatusPrintsACompactBlockAndTables(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, printStatus(&out, clusterStatus(), now))
	assert.Equal(t, `Node:       node-a (version 1.2.3, up 3h12m)
Addresses:  gossip 10.0.0.11:7790, control 10.0.0.11:7791, data 10.0.0.11:7792 (cluster drayage)
State dir:  /var/lib/drayage
Store:      etcd 10.0.0.9:2379,10.0.0.10:2379 (prefix drayage/): ok, read in 1.53ms, records at protocol 1
Volumes:    3 held here: 2 idle, 1 mounted
Transfers:  2 running

MEMBER              ADDRESS         STATE  VERSION  LAST SEEN
node-a (this node)  10.0.0.11:7790  alive  1.2.3    -
node-b              10.0.0.12:7790  dead   1.2.2    1m30s ago

VOLUME  DIRECTION  PEER    KIND           PROGRESS             RATE         STARTED  TRANSFER
db      in         node-b  move           41%, 2.1 of 5.0 GiB  120.0 MiB/s  20s ago  -
logs    out        node-c  copy as logs2  1.0 MiB sent         512.0 KiB/s  2s ago   9f2c
`, out.String())
}

func TestStatusOfALoneNodeWithAStoreThatDoesNotAnswer(t *testing.T) {
	s := control.Status{
		Node:    control.NodeStatus{Name: "node-a", Version: "dev", Root: "/var/lib/drayage", UptimeSeconds: 9},
		Store:   control.StoreStatus{Kind: "embedded", Prefix: "drayage/", Error: "no answer within 2s: context deadline exceeded"},
		Members: []control.NodeInfo{},
		Volumes: control.VolumeCounts{ByState: map[string]int{}},
	}
	var out bytes.Buffer
	require.NoError(t, printStatus(&out, s, now))
	assert.Contains(t, out.String(), "Addresses:  none: this node runs alone (no certificate in its TLS dir)\n")
	assert.Contains(t, out.String(), "Store:      embedded (prefix drayage/): NOT OK: no answer within 2s: context deadline exceeded\n")
	assert.Contains(t, out.String(), "Volumes:    0 held here\n")
	assert.Contains(t, out.String(), "(version dev, up 9s)")
	assert.NotContains(t, out.String(), "VOLUME", "no transfer table when nothing moves")
}

func TestStatusJSONCarriesEveryField(t *testing.T) {
	root := t.TempDir()
	want := clusterStatus()
	serveControl(t, root, fakeNodes{status: want})
	out, err := run(t, root, "status", "--json")
	require.NoError(t, err)
	var got control.Status
	require.NoError(t, json.Unmarshal([]byte(out), &got))
	assert.Equal(t, want, got)
	for _, field := range []string{`"uptime_seconds"`, `"latency_ms"`, `"by_state"`, `"direction": "in"`, `"peer": "node-b"`, `"ok": true`} {
		assert.Contains(t, out, field)
	}

	human, err := run(t, root, "status")
	require.NoError(t, err)
	assert.Contains(t, human, "Node:       node-a")
}
