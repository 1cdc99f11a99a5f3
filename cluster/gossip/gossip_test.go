package gossip

import (
	"crypto/rand"
	"io"
	stdlog "log"
	"log/slog"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func key(t *testing.T) []byte {
	k := make([]byte, 32)
	_, err := rand.Read(k)
	require.NoError(t, err)
	return k
}

func start(t *testing.T, name string, k []byte, label string) *Gossip {
	t.Helper()
	g, err := Start(Config{
		Node: name, BindAddr: "127.0.0.1", Port: freePort(t), Key: k, Label: label,
		Meta:   Meta{Control: "127.0.0.1:7791", Data: "127.0.0.1:7792", Version: "test"},
		Logger: slog.New(slog.DiscardHandler), ProbeInterval: 200 * time.Millisecond,
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = g.ml.Shutdown() })
	return g
}

func states(g *Gossip) map[string]string {
	out := map[string]string{}
	for _, m := range g.Members() {
		out[m.Name] = m.State
	}
	return out
}

func TestThreeNodesFindEachOtherFromOneSeedAndSeeADeadOne(t *testing.T) {
	k := key(t)
	a, b, c := start(t, "node-a", k, "prod"), start(t, "node-b", k, "prod"), start(t, "node-c", k, "prod")
	for _, g := range []*Gossip{b, c} {
		n, err := g.Join([]string{a.Addr()})
		require.NoError(t, err)
		require.Equal(t, 1, n)
	}
	all := map[string]string{"node-a": StateAlive, "node-b": StateAlive, "node-c": StateAlive}
	for _, g := range []*Gossip{a, b, c} {
		require.Eventually(t, func() bool { return assert.ObjectsAreEqual(all, states(g)) }, 10*time.Second, 50*time.Millisecond)
	}
	m, ok := c.Member("node-b")
	require.True(t, ok)
	assert.Equal(t, Meta{Control: "127.0.0.1:7791", Data: "127.0.0.1:7792", Version: "test"}, m.Meta)
	assert.True(t, c.Known("node-a"))
	assert.False(t, c.Known("node-x"))

	// node-c dies without a word (its process is killed: no leave message).
	require.NoError(t, c.ml.Shutdown())
	killed := time.Now()
	require.Eventually(t, func() bool { return states(a)["node-c"] == StateDead && states(b)["node-c"] == StateDead },
		30*time.Second, 50*time.Millisecond)
	t.Logf("node-c reported dead %s after it stopped (probe interval %s)", time.Since(killed).Round(100*time.Millisecond), 200*time.Millisecond)
	dead, _ := a.Member("node-c")
	assert.WithinDuration(t, killed, dead.LastSeen, 5*time.Second, "last seen around when it stopped")

	// node-b leaves cleanly.
	require.NoError(t, b.Leave(time.Second))
	require.Eventually(t, func() bool { return states(a)["node-b"] == StateLeft }, 10*time.Second, 50*time.Millisecond)
	assert.False(t, a.Known("node-b"))
}

func TestNodesWithoutTheKeyOrWithAnotherLabelAreNotAdmitted(t *testing.T) {
	k := key(t)
	a := start(t, "node-a", k, "prod")

	// Another key.
	wrongKey := start(t, "intruder-key", key(t), "prod")
	_, err := wrongKey.Join([]string{a.Addr()})
	require.Error(t, err)

	// Another cluster's label, same key.
	otherCluster := start(t, "intruder-label", k, "staging")
	_, err = otherCluster.Join([]string{a.Addr()})
	require.Error(t, err)

	// No key at all: a plain memberlist without encryption.
	mc := memberlist.DefaultLANConfig()
	mc.Name, mc.BindAddr, mc.BindPort, mc.AdvertisePort = "intruder-plain", "127.0.0.1", freePort(t), 0
	mc.AdvertisePort = mc.BindPort
	mc.Label = "prod"
	mc.Logger = stdlog.New(io.Discard, "", 0)
	plain, err := memberlist.Create(mc)
	require.NoError(t, err)
	defer func() { _ = plain.Shutdown() }()
	_, err = plain.Join([]string{a.Addr()})
	require.Error(t, err)

	time.Sleep(time.Second) // let any stray gossip land
	assert.Equal(t, map[string]string{"node-a": StateAlive}, states(a), "nobody got in")
	_, err = Start(Config{Node: "x", BindAddr: "127.0.0.1", Port: freePort(t)})
	require.ErrorContains(t, err, "no key")
}

func TestJoinAcceptsSeedsWithoutAPort(t *testing.T) {
	k := key(t)
	a := start(t, "node-a", k, "")
	host, port, err := net.SplitHostPort(a.Addr())
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1", host)
	_, err = strconv.Atoi(port)
	require.NoError(t, err)
	b := start(t, "node-b", k, "")
	// "127.0.0.1" alone means the default port, where nobody listens here.
	_, err = b.Join([]string{"127.0.0.1"})
	require.Error(t, err)
	n, err := b.Join([]string{"127.0.0.1", a.Addr()})
	require.NoError(t, err)
	assert.Equal(t, 1, n)
}

func TestErrorsAreReportedAndHealthIsKnown(t *testing.T) {
	k := key(t)
	var errs atomic.Int64
	a, err := Start(Config{
		Node: "node-a", BindAddr: "127.0.0.1", Port: freePort(t), Key: k, Label: "prod",
		Logger: slog.New(slog.DiscardHandler), ProbeInterval: 200 * time.Millisecond,
		OnError: func() { errs.Add(1) },
	})
	require.NoError(t, err)
	defer func() { _ = a.ml.Shutdown() }()
	assert.Zero(t, a.HealthScore(), "healthy alone")
	assert.Zero(t, errs.Load())

	// A node with another key: node-a can't decrypt what it sends.
	intruder := start(t, "intruder", key(t), "prod")
	_, err = intruder.Join([]string{a.Addr()})
	require.Error(t, err)
	require.Eventually(t, func() bool { return errs.Load() > 0 }, 5*time.Second, 20*time.Millisecond)
}
