package integration

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A move interrupted at any point (the puller or the sender killed with SIGKILL, the
// network between them cut) loses nothing: the volume stays whole with its owner, the
// record stays consistent, and the next attempt completes from what was verified.
func TestInterruptedMovesLoseNothing(t *testing.T) {
	// 64 MiB sent at 8 MB/s: about 8 s in flight, time to interrupt it.
	// A Mount budget of 3 s: a container start that pulls the volume outlives it.
	nodes := startNodes(t, etcdStore, []string{"node-a", "node-b"}, "DRAYAGE_RATE_LIMIT=8MB", "DRAYAGE_MOUNT_TIMEOUT=3s")
	a, b := nodes[0], nodes[1]
	vol := "-v=bulk:/data"
	a.docker("volume", "create", "--driver", nodePlugin, "bulk")
	a.run(vol, testImage, "sh", "-c", `cd /data && for i in $(seq 64); do head -c 1048576 /dev/urandom > f$i; done && md5sum f* > sums`)
	intact := func(n *node) {
		t.Helper()
		out := n.run(vol, testImage, "sh", "-c", "cd /data && md5sum -c sums")
		assert.Equal(t, 64, strings.Count(out, ": OK"), "every file of the volume is whole on node %s:\n%s", n.name, out)
	}
	staged := filepath.Join(b.state, "staging", "bulk")
	startMove := func() *backgroundMove { return startBackgroundMove(t, b, "bulk") }
	// staging waits for the move to have staged this much, failing if it ended first.
	staging := func(m *backgroundMove, want int64) {
		t.Helper()
		eventually(t, timeout, "the pull to reach "+strconv.FormatInt(want>>20, 10)+" MiB", func() bool {
			require.False(t, m.ended(), "the move ended early: %s", m.out.String())
			return dirBytes(staged) >= want
		})
	}
	failed := func(m *backgroundMove, what string) {
		t.Helper()
		<-m.done
		assert.Error(t, m.err, "the move fails when %s", what)
		t.Logf("%s: the move said: %s", what, strings.TrimSpace(m.out.String()))
	}
	// After an interruption: the owner is still node-a, the claim lapses, node-b shows no
	// volume of its own, and node-a's copy is whole.
	settled := func(what string) {
		t.Helper()
		eventually(t, timeout, "the record to settle after "+what, func() bool {
			info := inspect(t, a.state, "bulk")
			return info.Node == "node-a" && info.State == "idle"
		})
		_, err := os.Stat(filepath.Join(b.state, "volumes", "bulk"))
		assert.True(t, os.IsNotExist(err), "no partial volume on node-b after %s", what)
		intact(a)
	}

	for _, at := range []struct {
		victim *node
		bytes  int64
	}{{b, 4 << 20}, {a, 20 << 20}, {b, 36 << 20}} {
		what := "killing node " + at.victim.name + "'s plugin at " + strconv.FormatInt(at.bytes>>20, 10) + " MiB staged"
		m := startMove()
		staging(m, at.bytes)
		at.victim.killPlugin()
		failed(m, what)
		settled(what)
		t.Logf("%s: the record settled, node-a's copy whole, %d MiB kept in node-b's staging", what, dirBytes(staged)>>20)
	}

	// Cut node-b off mid-transfer: its lease expires in the store, so its claim goes and
	// node-a can use the volume again; nothing commits on node-b.
	m := startMove()
	staging(m, 44<<20)
	b.cut()
	eventually(t, timeout, "node-b's claim to expire", func() bool { return inspect(t, a.state, "bulk").State == "idle" })
	assert.Equal(t, "node-a", inspect(t, a.state, "bulk").Node)
	intact(a)
	b.heal()
	failed(m, "cutting node-b off")
	settled("cutting node-b off")

	// The next attempt completes, sending only what node-b doesn't hold verified yet.
	out := b.drayage("volume", "move", "bulk", "--to", "node-b")
	assert.Contains(t, out, "moved volume bulk from node node-a to node node-b")
	intact(b)
	info := inspect(t, a.state, "bulk")
	assert.Equal(t, "node-b", info.Node)
	sent := sentBytes(t, a, "bulk")
	require.NotEmpty(t, sent, "node-a logged no finished transfer of bulk:\n%s", grepLines(a.log(), "sen"))
	assert.Less(t, sent[len(sent)-1], int64(64<<20)-int64(44<<20)+int64(8<<20), "the last attempt resumed from staging: %v", sent)
	t.Logf("bytes sent by node-a per completed transfer: %v", sent)

	// A container start on node-a pulls it back, longer than the Mount budget: the Mount
	// fails in time with the progress, the pull goes on (docker volume inspect shows it),
	// and a start once it is done mounts at once.
	start := time.Now()
	out = a.runFails(vol, testImage, "true")
	assert.Contains(t, out, `volume "bulk" is still being pulled from node "node-b" to node "node-a": `)
	assert.Contains(t, out, "it continues in the background: start the container again in a moment")
	assert.Less(t, time.Since(start), 10*time.Second, "the Mount answers within its budget, not the engine's deadline")
	status := a.docker("volume", "inspect", "--format", "{{.Status.progress}}", "bulk")
	assert.Regexp(t, `^\d+% \(.* of .*\) from node-b`, status)
	t.Logf("Mount past its budget: %q; inspect: %q", out, status)
	// drayage status on both ends shows the transfer in flight, in and out.
	assert.Regexp(t, `bulk\s+in\s+node-b\s+move\s+\d+%`, a.drayage("status"))
	assert.Regexp(t, `bulk\s+out\s+node-a`, b.drayage("status"))
	eventually(t, timeout, "the background pull to finish", func() bool { return inspect(t, b.state, "bulk").Node == "node-a" })
	intact(a)
}

// sentBytes lists the bytes of each finished transfer of the volume that node n logged.
func sentBytes(t *testing.T, n *node, volume string) []int64 {
	t.Helper()
	// The engine logs the plugin's lines quoted: msg="... msg=\"sent volume\" node=n volume=bulk ... bytes=123 ..."
	re := regexp.MustCompile(`sent volume\\?".*? volume=` + regexp.QuoteMeta(volume) + ` .*?bytes=(\d+)`)
	var sent []int64
	for _, m := range re.FindAllStringSubmatch(n.log(), -1) {
		v, err := strconv.ParseInt(m[1], 10, 64)
		require.NoError(t, err)
		sent = append(sent, v)
	}
	return sent
}

// backgroundMove is 'drayage volume move NAME --to NODE' running on node n.
type backgroundMove struct {
	out  bytes.Buffer
	done chan struct{}
	err  error
}

func startBackgroundMove(t *testing.T, n *node, name string) *backgroundMove {
	return startMove(t, n.state, name, n.name)
}

// startMove runs 'drayage volume move NAME --to TO' against the daemon at root.
func startMove(t *testing.T, root, name, to string) *backgroundMove {
	m := &backgroundMove{done: make(chan struct{})}
	cmd := exec.Command(binary, "--root", root, "volume", "move", name, "--to", to)
	cmd.Stdout, cmd.Stderr = &m.out, &m.out
	require.NoError(t, cmd.Start())
	go func() { m.err = cmd.Wait(); close(m.done) }()
	return m
}

func (m *backgroundMove) ended() bool {
	select {
	case <-m.done:
		return true
	default:
		return false
	}
}

// grepLines returns the lines of text that contain substr.
func grepLines(text, substr string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
