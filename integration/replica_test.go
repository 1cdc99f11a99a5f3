package integration

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/drayage/drayage/daemon/volume"
)

// A volume created with replicas=3 on three nodes is kept on all three: the owner's
// copy and two replicas that follow it — at once when its container stops, within the
// sync interval while one runs — each always one complete tree, through a replica's
// daemon killed and its network cut mid-sync. A container started next on a replica's
// node finds the data there, sending only what the replica lacked, and the old owner's
// copy becomes a replica.
func TestReplicasFollowTheirVolumeAndAMoveToOneSendsOnlyTheDelta(t *testing.T) {
	nodes := startNodes(t, etcdStore, []string{"node-a", "node-b", "node-c"},
		"DRAYAGE_SYNC_INTERVAL=2s", "DRAYAGE_RATE_LIMIT=16MB", "DRAYAGE_METRICS_ADDR=:7796")
	a, b, c := nodes[0], nodes[1], nodes[2]
	vol := "-v=db:/data"
	data := func(n *node) string { return filepath.Join(n.state, "volumes", "db", "data") }

	a.docker("volume", "create", "--driver", nodePlugin, "-o", "replicas=3", "db")
	eventually(t, timeout, "both replicas of the new volume", func() bool { return len(readyReplicas(t, a, "db")) == 2 })

	// Everything a copy keeps: modes, owners, times, links, hardlinks, an attribute.
	a.run(vol, testImage, "sh", "-c", `cd /data && mkdir -p app/logs && for i in $(seq 200); do echo "row $i" > app/r$i; done &&
		chmod 0640 app/r1 && chown 1000:1000 app/r2 && touch -d '2001-02-03 04:05:06' app/r3 && ln -s r4 app/link && ln app/r5 app/hard &&
		head -c 1048576 /dev/urandom > app/blob`)
	// The Unmount answered once the replicas had it all: no waiting here.
	want := treeOf(t, data(a))
	for _, n := range []*node{b, c} {
		assert.Equal(t, want, treeOf(t, data(n)), "node %s's replica after the container stopped", n.name)
	}
	require.NoError(t, unix.Setxattr(filepath.Join(data(a), "app", "r6"), "user.note", []byte("kept"), 0))
	a.run(vol, testImage, "true") // mounted and unmounted: synced again
	want = treeOf(t, data(a))
	assert.Contains(t, want["app/r6"], "xattr:user.note")
	for _, n := range []*node{b, c} {
		assert.Equal(t, want, treeOf(t, data(n)), "node %s's replica has the attribute", n.name)
	}
	var status struct {
		Copies   int `json:"copies"`
		Replicas []struct {
			Node  string  `json:"node"`
			State string  `json:"state"`
			Lag   float64 `json:"lag_seconds"`
		} `json:"replicas"`
	}
	require.NoError(t, json.Unmarshal([]byte(b.docker("volume", "inspect", "--format", "{{json .Status}}", "db")), &status))
	assert.Equal(t, 3, status.Copies)
	require.Len(t, status.Replicas, 2, "docker volume inspect shows the replicas")
	for _, r := range status.Replicas {
		assert.Equal(t, "ready", r.State, r.Node)
		assert.Zero(t, r.Lag, "synced since the last container left")
	}
	assert.Contains(t, a.drayage("volume", "ls"), "3/3")

	// While a container runs, what it writes reaches the replicas within the interval.
	id := a.docker("run", "-d", "--network", "none", vol, testImage, "sh", "-c", "echo one > /data/live && sleep 3600")
	eventually(t, 20*time.Second, "the running container's write on both replicas", func() bool {
		want := treeOf(t, data(a))
		return want["live"] != "" && equalTrees(t, want, data(b)) && equalTrees(t, want, data(c))
	})
	// Mounted but unchanged, the volume costs no sync: the kernel says nothing changed.
	assert.Contains(t, a.log(), "tracking file changes with fanotify")
	time.Sleep(3 * time.Second) // a sync the write started ends
	idle := scrape(t, a)[`drayage_replica_syncs_total{result="ok"}`]
	time.Sleep(6 * time.Second) // three sync intervals
	assert.Equal(t, idle, scrape(t, a)[`drayage_replica_syncs_total{result="ok"}`], "no sync of a mounted volume that did not change")
	info := inspect(t, a.state, "db")
	require.Len(t, info.Replicas, 2)
	assert.Positive(t, info.Replicas[0].Lag, "mounted: a replica may lack what was written since its sync began")
	metrics := scrape(t, a)
	assert.Positive(t, metrics[`drayage_replica_syncs_total{result="ok"}`])
	assert.Contains(t, metrics, `drayage_replica_lag_seconds{replica="node-b",volume="db"}`)

	// A sync cut off on a replica's node — its daemon killed, its network cut — leaves
	// the replica as its last sync made it, or as the complete new one if that sync won
	// the race: never anything between. The next sync completes it.
	before := treeOf(t, data(b))
	a.docker("exec", id, "sh", "-c", "head -c 67108864 /dev/urandom > /data/big")
	after := treeOf(t, data(a))
	eventually(t, 20*time.Second, "the sync of the big file to start on node-b and node-c", func() bool {
		return dirBytes(filepath.Join(b.state, "staging", "db")) > 4<<20 && dirBytes(filepath.Join(c.state, "staging", "db")) > 4<<20
	})
	b.killPlugin()
	c.cut()
	for _, n := range []*node{b, c} {
		got := treeOf(t, data(n))
		assert.True(t, equalMaps(got, before) || equalMaps(got, after), "node %s's replica is one whole sync, the last or the new one", n.name)
		t.Logf("node %s's replica after the fault: the %s sync", n.name, map[bool]string{true: "last", false: "new"}[equalMaps(got, before)])
	}
	c.heal()
	a.docker("rm", "-f", id) // the Unmount syncs, and waits for it
	want = treeOf(t, data(a))
	eventually(t, timeout, "both replicas to have the big file after the faults", func() bool {
		return equalTrees(t, want, data(b)) && equalTrees(t, want, data(c))
	})

	// A large file changed in place (ten scattered 4 KiB writes into 256 MiB) syncs as
	// the chunks that changed, and the replicas are byte-identical.
	a.run(vol, testImage, "sh", "-c", "head -c 268435456 /dev/urandom > /data/image")
	before = treeOf(t, data(a))
	// The Unmount waits for its sync 20 s at most; 256 MiB at DRAYAGE_RATE_LIMIT=16MB may
	// take longer on a slow run.
	for _, n := range []*node{b, c} {
		eventually(t, timeout, "node "+n.name+" to have the image", func() bool { return equalTrees(t, before, data(n)) })
	}
	syncs := len(receivedBytes(t, b, "db"))
	a.run(vol, testImage, "sh", "-c", `for i in 0 1 2 3 4 5 6 7 8 9; do
		head -c 4096 /dev/urandom | dd of=/data/image bs=4096 seek=$((i * 6553 + 7)) conv=notrunc 2>/dev/null; done`)
	want = treeOf(t, data(a))
	require.NotEqual(t, before["image"], want["image"])
	for _, n := range []*node{b, c} {
		assert.Equal(t, want, treeOf(t, data(n)), "node %s's image is byte-identical", n.name)
	}
	sent := receivedBytes(t, b, "db")[syncs:]
	require.NotEmpty(t, sent)
	var delta int64
	for _, n := range sent {
		delta += n
	}
	assert.Less(t, delta, int64(2<<20), "ten 4 KiB writes into 256 MiB cross the wire as the chunks they touched")
	t.Logf("10 writes of 4 KiB into a 256 MiB file: the syncs to node-b sent %d bytes", delta)

	// A container started on a replica's node: the volume moves there, sending only what
	// the replica lacked (nothing: it synced when the last container stopped).
	out := b.run(vol, testImage, "sh", "-c", "cat /data/live && wc -c < /data/big")
	assert.Equal(t, "one\n67108864", out)
	moved := receivedBytes(t, b, "db")
	require.NotEmpty(t, moved)
	assert.Less(t, moved[len(moved)-1], int64(64<<10), "the move sends only the delta since the replica's last sync")
	t.Logf("the move to a replica's node sent %d bytes of a %d-byte volume", moved[len(moved)-1], dirBytes(data(a)))
	eventually(t, timeout, "node-a's old copy to count as a replica of the volume on node-b", func() bool {
		reps := readyReplicas(t, b, "db")
		return len(reps) == 2 && reps[0] == "node-a" && reps[1] == "node-c"
	})
	assert.Equal(t, "node-b", inspect(t, c.state, "db").Node)

	// Change tracking: 50,000 files, 10 of them changed while a container runs. The sync
	// reads the metadata of those and their directories only, and sends only them.
	files := "-v=files:/data"
	c.docker("volume", "create", "--driver", nodePlugin, "-o", "replicas=2", "-o", "replica-nodes=node-a", "-o", "sync-interval=30s", "files")
	c.run(files, testImage, "sh", "-c", `cd /data && for d in $(seq 50); do mkdir d$d && for i in $(seq 1000); do echo "file $d/$i" > d$d/f$i; done; done`)
	dataC, dataA := filepath.Join(c.state, "volumes", "files", "data"), filepath.Join(a.state, "volumes", "files", "data")
	// The first sync of 50,000 files may take longer than an Unmount waits for it.
	eventually(t, 3*timeout, "the 50,000 files on node-a's replica", func() bool { return equalTrees(t, treeOf(t, dataC), dataA) })
	id = c.docker("run", "-d", "--network", "none", files, testImage, "sleep", "3600")
	const (
		walked  = `drayage_tree_entries_read_total{how="walk"}`
		tracked = `drayage_tree_entries_read_total{how="changes"}`
		sentNow = `drayage_transfer_files_total{direction="sent"}`
	)
	m0 := settled(t, c)
	c.docker("exec", id, "sh", "-c", `for i in $(seq 10); do echo changed > /data/d$((i * 5))/f$((i * 90)); done`)
	eventually(t, 3*timeout, "the 10 changes on node-a's replica, within the sync interval (30 s)", func() bool { return equalTrees(t, treeOf(t, dataC), dataA) })
	m1 := scrape(t, c)
	if !assert.Equal(t, m0[walked], m1[walked], "no walk of the 50,001 entries") {
		for _, l := range strings.Split(c.log(), "\n") {
			if (strings.Contains(l, "sending volume") || strings.Contains(l, "sync planned") || strings.Contains(l, "mounted volume")) && strings.Contains(l, "volume=files") {
				t.Log(l)
			}
		}
	}
	assert.InDelta(t, 25, m1[tracked]-m0[tracked], 15, "the 10 files, their 10 directories and the root, read once or twice")
	assert.Equal(t, 10.0, m1[sentNow]-m0[sentNow], "only the 10 changed files were sent")
	t.Logf("10 files changed among 50,000: the sync read %.0f entries and sent %.0f files", m1[tracked]-m0[tracked], m1[sentNow]-m0[sentNow])

	// A mounted volume the change log saw no change of is walked on its owner every 10
	// intervals all the same (a write through a shared memory map makes no event): when
	// that finds nothing either, no sync runs, and the store records that the replica
	// was current, so its lag does not grow.
	c.docker("volume", "create", "--driver", nodePlugin, "-o", "replicas=2", "-o", "replica-nodes=node-a", "-o", "sync-interval=1s", "quiet")
	c.run("-v=quiet:/data", testImage, "sh", "-c", `for i in $(seq 100); do echo $i > /data/f$i; done`)
	quiet := c.docker("run", "-d", "--network", "none", "-v=quiet:/data", testImage, "sleep", "3600")
	const checked = `drayage_tree_reads_total{how="check"}`
	q0 := settled(t, c)
	eventually(t, timeout, "two checks of the mounted volume (every 10 s)", func() bool { return scrape(t, c)[checked] >= q0[checked]+2 })
	q1 := scrape(t, c)
	assert.Equal(t, q0[`drayage_replica_syncs_total{result="ok"}`], q1[`drayage_replica_syncs_total{result="ok"}`], "a check that found nothing syncs nothing")
	qi := inspect(t, c.state, "quiet")
	require.Len(t, qi.Replicas, 1)
	assert.Less(t, qi.Replicas[0].Lag, 5.0, "the check confirmed the replica current: its lag is the time since")
	c.docker("rm", "-f", quiet)

	// Changes made while the owner's daemon is stopped, and killed before any sync read
	// them, are found by the walk of the sync it runs when it starts again: its change
	// log is a new one, which can't vouch for what happened before it.
	require.NoError(t, syscall.Kill(c.pluginPID(), syscall.SIGSTOP))
	c.docker("exec", id, "sh", "-c", `for i in $(seq 10); do echo again > /data/d$((i * 4))/f$((i * 7)); done`)
	c.killPlugin()
	eventually(t, timeout, "the changes made while node-c's daemon was down on node-a's replica", func() bool {
		return equalTrees(t, treeOf(t, dataC), dataA)
	})
	mc := scrape(t, c)
	assert.GreaterOrEqual(t, mc[walked], 50000.0, "the first sync after the restart walked the volume")
	assert.Equal(t, 10.0, mc[sentNow], "the sync after the restart sent the 10 changed files, no more")
	c.docker("rm", "-f", id)
}

// settled scrapes node n's metrics once no replica sync of a volume it owns runs, and
// none started or ended for 3 seconds.
func settled(t testing.TB, n *node) map[string]float64 {
	t.Helper()
	counters := []string{`drayage_replica_syncs_total{result="ok"}`, `drayage_replica_syncs_total{result="failed"}`,
		`drayage_tree_reads_total{how="walk"}`, `drayage_tree_reads_total{how="changes"}`, `drayage_tree_reads_total{how="check"}`,
		`drayage_replica_syncs_running`}
	last := scrape(t, n)
	for deadline := time.Now().Add(3 * timeout); time.Now().Before(deadline); {
		time.Sleep(3 * time.Second)
		now := scrape(t, n)
		same := now[`drayage_replica_syncs_running`] == 0
		for _, c := range counters {
			same = same && now[c] == last[c]
		}
		if same {
			return now
		}
		last = now
	}
	t.Fatalf("node %s's replica syncs did not stop", n.name)
	return nil
}

// readyReplicas lists the nodes whose replica of a volume is ready, as node n sees them.
func readyReplicas(t *testing.T, n *node, name string) []string {
	var ready []string
	for _, r := range inspect(t, n.state, name).Replicas {
		if r.State == volume.ReplicaReady {
			ready = append(ready, r.Node)
		}
	}
	return ready
}

// equalTrees reports whether dir holds a tree described as want (treeOf).
func equalTrees(t testing.TB, want map[string]string, dir string) bool {
	return equalMaps(treeOf(t, dir), want)
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range b {
		if a[k] != v {
			return false
		}
	}
	return true
}

// receivedBytes lists the content bytes of each pull of the volume that node n logged
// (moves and replica syncs alike), in order.
func receivedBytes(t *testing.T, n *node, volume string) []int64 {
	t.Helper()
	re := regexp.MustCompile(`received volume\\?".*? volume=` + regexp.QuoteMeta(volume) + ` .*?bytes=(\d+)`)
	var got []int64
	for _, m := range re.FindAllStringSubmatch(n.log(), -1) {
		v, err := strconv.ParseInt(m[1], 10, 64)
		require.NoError(t, err)
		got = append(got, v)
	}
	return got
}

// The same on Consul: replica records and their fencing ride on its sessions and
// transactions as on etcd's.
func TestReplicasOnConsul(t *testing.T) {
	nodes := startNodes(t, consulStore, []string{"node-a", "node-b"})
	a, b := nodes[0], nodes[1]
	vol := "-v=logs:/data"
	a.docker("volume", "create", "--driver", nodePlugin, "-o", "replicas=2", "logs")
	a.run(vol, testImage, "sh", "-c", `for i in $(seq 50); do echo "line $i" >> /data/log; done; mkdir /data/d && echo x > /data/d/f`)
	dataA, dataB := filepath.Join(a.state, "volumes", "logs", "data"), filepath.Join(b.state, "volumes", "logs", "data")
	assert.Equal(t, treeOf(t, dataA), treeOf(t, dataB), "node-b's replica after the container stopped")
	assert.Equal(t, []string{"node-b"}, readyReplicas(t, a, "logs"))

	out := b.run(vol, testImage, "tail", "-n", "1", "/data/log")
	assert.Equal(t, "line 50", out)
	moved := receivedBytes(t, b, "logs")
	require.NotEmpty(t, moved)
	assert.Zero(t, moved[len(moved)-1], "the replica had it all")
	eventually(t, timeout, "node-a's old copy to count as the replica", func() bool {
		return slices.Equal(readyReplicas(t, b, "logs"), []string{"node-a"})
	})
}
