package main

import (
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/drayage/drayage/cluster/gossip"
)

// gossipResult is what a simulated cluster measured.
type gossipResult struct {
	Nodes int
	// Converge is how long a new node took to be seen alive by every node (p50: by half).
	ConvergeP50 time.Duration
	Converge    time.Duration
	// Detect* are how long after a node was cut off the others declared it dead, over
	// every observer of every node cut off.
	DetectP50 time.Duration
	DetectP99 time.Duration
	DetectMax time.Duration
	// BytesPerNode is what a node sends per second in a quiet cluster; AnnounceBytes
	// is what one node's metadata change (a free-space announcement) costs the cluster,
	// per node.
	BytesPerNode  float64
	AnnounceBytes float64
	// FalseDeaths counts the times a node that was never cut off was declared dead.
	FalseDeaths int
	// CPUPerNode is the CPU time a node spends per second in a quiet cluster.
	CPUPerNode time.Duration
	// Settings are the gossip settings the nodes ran with.
	Settings string
}

// joinRate is how many nodes join the simulated cluster a second.
const joinRate = 25

// simNode is one simulated node, with what it has seen of the others.
type simNode struct {
	name   string
	g      *gossip.Gossip
	t      *simTransport
	mu     sync.Mutex
	states map[string]string
	alive  int
}

// gossipSim is a cluster of nodes running drayage's gossip package in one process.
type gossipSim struct {
	net   *simNet
	nodes []*simNode
	spare []*simTransport
	key   []byte
	cfg   gossip.Config

	mu          sync.Mutex
	watch       map[string]time.Time // member/state -> when the watch began
	cut         map[string]bool
	falseDeaths int
	hits        map[string][]time.Duration
}

func runGossip(args []string) error {
	f := flag.NewFlagSet("gossip", flag.ExitOnError)
	nodes := f.Int("nodes", 1000, "nodes in the simulated cluster")
	kills := f.Int("kills", 3, "nodes cut off, one after another, to time their detection")
	window := f.Duration("window", 3*time.Minute, "how long the quiet cluster's traffic is measured")
	gprofile := f.String("profile", "", "gossip profile (default: the daemon's)")
	out := f.String("out", "", "figures file to append to")
	profile := f.String("cpuprofile", "", "write a CPU profile of the whole run here")
	_ = f.Parse(args)
	if *profile != "" {
		pf, err := os.Create(*profile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(pf); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	res, err := simulateGossip(*nodes, *kills, *window, *gprofile)
	if err != nil {
		return err
	}
	name := *gprofile
	if name == "" {
		name = gossip.ProfileLAN
	}
	at := fmt.Sprintf("%d nodes, profile %s: %s", res.Nodes, name, res.Settings)
	for _, f := range []figure{
		{"converge", res.Converge.Seconds(), "s", fmt.Sprintf("a new node seen alive by all (by half: %.2f s); %s", res.ConvergeP50.Seconds(), at)},
		{"detect-p50", res.DetectP50.Seconds(), "s", fmt.Sprintf("a node cut off declared dead, over every observer of %d nodes cut off", *kills)},
		{"detect-p99", res.DetectP99.Seconds(), "s", fmt.Sprintf("the same; the slowest observer: %.2f s", res.DetectMax.Seconds())},
		{"false-deaths", float64(res.FalseDeaths), "", "nodes declared dead that were never cut off, all run long"},
		{"bytes", res.BytesPerNode, "B/s", fmt.Sprintf("sent per node in a quiet cluster, measured over %v", *window)},
		{"announce", res.AnnounceBytes, "B", "sent per node for one node's metadata change (a free-space announcement)"},
		{"cpu", float64(res.CPUPerNode) / float64(time.Millisecond), "ms/s", "CPU per node in a quiet cluster"},
	} {
		f.Figure = "gossip." + name + "." + f.Figure
		if err := appendFigure(*out, f); err != nil {
			return err
		}
	}
	return nil
}

func simulateGossip(n, kills int, window time.Duration, profile string) (gossipResult, error) {
	// One heap holds every node's state here, where a node's own process holds only its
	// own: scanning it would be most of the CPU, and would starve the nodes of the time
	// they need to answer probes. The collector runs only when the heap reaches 10 GiB.
	debug.SetGCPercent(-1)
	debug.SetMemoryLimit(10 << 30)
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	cfg, err := gossip.ProfileConfig(profile)
	if err != nil {
		return gossipResult{}, err
	}
	s := &gossipSim{net: newSimNet(), key: key, cfg: cfg, watch: map[string]time.Time{}, cut: map[string]bool{}, hits: map[string][]time.Duration{}}
	res := gossipResult{Nodes: n, Settings: gossip.Describe(cfg, n)}
	// Every transport first: MockNetwork can't add one while nodes talk.
	transports := make([]*simTransport, n+1)
	for i := range transports {
		transports[i] = s.net.transport(fmt.Sprintf("node-%04d", i))
	}
	s.spare = transports[n:]
	// Nodes join at joinRate a second: faster, the news of the joins alone saturates this
	// machine's two cores (one process runs every node), and nodes too slow to answer
	// their probes are taken for dead. A cluster forms at that pace in production too.
	logf("gossip: starting %d nodes, %d a second", n, joinRate)
	for i := range n {
		if err := s.start(transports[i]); err != nil {
			return res, err
		}
		time.Sleep(time.Second / joinRate)
	}
	// A thousand joins within seconds overflow the nodes' queues of incoming messages
	// (memberlist drops what does not fit), and what a node missed reaches it at its next
	// full-state sync, minutes away in a large cluster: the simulation syncs the nodes
	// that lag with a random other node instead of waiting (a Join is a full sync). That
	// is the harness's start, not a measured figure.
	for round := 0; s.minAlive() < n; round++ {
		if round == 20 {
			return res, fmt.Errorf("the %d nodes never all saw each other (the one that sees fewest sees %d)", n, s.minAlive())
		}
		time.Sleep(10 * time.Second)
		for _, node := range s.lagging(n) {
			peer := s.nodes[mrand.IntN(len(s.nodes))]
			if _, err := node.g.Join([]string{peer.g.Addr()}); err != nil {
				logf("gossip: %s syncs with %s: %v", node.name, peer.name, err)
			}
		}
	}
	logf("gossip: %d nodes see each other; settling", n)
	time.Sleep(30 * time.Second)
	s.mu.Lock()
	logf("gossip: %d nodes were taken for dead while the cluster formed; counting from now", s.falseDeaths)
	s.falseDeaths = 0
	s.mu.Unlock()

	// A new node joins through one seed.
	newcomer := s.spare[0]
	s.begin(newcomer.name, gossip.StateAlive)
	if err := s.start(newcomer); err != nil {
		return res, err
	}
	seen, err := s.await(newcomer.name, gossip.StateAlive, n, time.Minute)
	if err != nil {
		return res, err
	}
	res.ConvergeP50, res.Converge = quantile(seen, 0.5), slices.Max(seen)
	logf("gossip: a new node was seen by all in %v (p50 %v); quiet traffic for %v", res.Converge, res.ConvergeP50, window)
	time.Sleep(10 * time.Second) // its broadcasts end

	// A quiet cluster: probes, acks and push/pull syncs.
	sent0, cpu0, t0 := s.sent(), cpuTime(), time.Now()
	time.Sleep(window)
	live := len(s.nodes)
	elapsed := time.Since(t0).Seconds()
	res.BytesPerNode = float64(s.sent()-sent0) / float64(live) / elapsed
	res.CPUPerNode = time.Duration(float64(cpuTime()-cpu0) / float64(live) / elapsed)

	// Metadata changes (free-space announcements) of announcers nodes at once: what one
	// costs the cluster, per node. Many, so that they stand out of the quiet traffic.
	const announcers = 50
	sent1, t1 := s.sent(), time.Now()
	var wg sync.WaitGroup
	for _, node := range s.nodes[1 : 1+announcers] {
		wg.Go(func() { _ = node.g.SetMeta(func(m *gossip.Meta) { m.Free -= 1 << 30 }, 15*time.Second) })
	}
	time.Sleep(20 * time.Second)
	wg.Wait()
	extra := float64(s.sent()-sent1) - res.BytesPerNode*float64(live)*time.Since(t1).Seconds()
	res.AnnounceBytes = max(0, extra/float64(live)/announcers)

	// Nodes cut off, one at a time.
	var detect []time.Duration
	for k, i := range mrand.Perm(len(s.nodes) - 2)[:kills] {
		victim := s.nodes[2+i] // neither the first node nor the one announcing
		s.mu.Lock()
		s.cut[victim.name] = true
		s.mu.Unlock()
		s.begin(victim.name, gossip.StateDead)
		s.net.cut(victim.t)
		seen, err := s.await(victim.name, gossip.StateDead, len(s.nodes)-1-k, 2*time.Minute)
		if err != nil {
			return res, err
		}
		detect = append(detect, seen...)
		logf("gossip: cut-off node %s declared dead by all in %v", victim.name, slices.Max(seen))
		time.Sleep(5 * time.Second)
	}
	s.mu.Lock()
	res.FalseDeaths = s.falseDeaths
	s.mu.Unlock()
	var dropped int64
	for _, node := range s.nodes {
		dropped += node.t.dropped.Load()
	}
	logf("gossip: %d packets dropped by full receive queues in the whole run", dropped)
	if len(detect) > 0 {
		res.DetectP50, res.DetectP99, res.DetectMax = quantile(detect, 0.5), quantile(detect, 0.99), slices.Max(detect)
	}
	return res, nil
}

// start starts a node on transport t and joins it to the first node.
func (s *gossipSim) start(t *simTransport) error {
	node := &simNode{name: t.name, t: t, states: map[string]string{}}
	cfg := s.cfg
	cfg.Node, cfg.Key, cfg.Label, cfg.Transport = t.name, s.key, "scale", t
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.Meta = gossip.Meta{ // as large as a daemon's
		Control: "10.200.13.117:7791", Data: "10.200.13.117:7792", Version: "v1.4.0-12-g3f9c2ab1d0e4",
		Protocol: "1", Store: "10.200.13.117:2379", Free: 412_316_860_416,
	}
	cfg.OnChange = func(m gossip.Member) { s.seen(node, m) }
	g, err := gossip.Start(cfg)
	if err != nil {
		return err
	}
	node.g = g
	for try := 0; len(s.nodes) > 0; try++ {
		_, err := g.Join([]string{s.nodes[mrand.IntN(len(s.nodes))].g.Addr()})
		if err == nil {
			break
		}
		if try == 2 {
			return fmt.Errorf("%s joins: %w (the machine is too slow for this many simulated nodes: try fewer)", t.name, err)
		}
	}
	s.mu.Lock()
	s.nodes = append(s.nodes, node)
	s.mu.Unlock()
	return nil
}

func (s *gossipSim) seen(node *simNode, m gossip.Member) {
	node.mu.Lock()
	if node.states[m.Name] == gossip.StateAlive {
		node.alive--
	}
	node.states[m.Name] = m.State
	if m.State == gossip.StateAlive {
		node.alive++
	}
	node.mu.Unlock()
	key := m.Name + "/" + m.State
	s.mu.Lock()
	if m.State == gossip.StateDead && !s.cut[m.Name] {
		s.falseDeaths++
	}
	if t0, ok := s.watch[key]; ok && m.Name != node.name {
		s.hits[key] = append(s.hits[key], time.Since(t0))
	}
	s.mu.Unlock()
}

// begin starts timing when the nodes see member in state.
func (s *gossipSim) begin(member, state string) {
	s.mu.Lock()
	s.watch[member+"/"+state] = time.Now()
	s.mu.Unlock()
}

// await waits until observers nodes have seen member in state, and returns when each did.
func (s *gossipSim) await(member, state string, observers int, timeout time.Duration) ([]time.Duration, error) {
	key := member + "/" + state
	count := func() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.hits[key]) }
	if err := s.until(timeout, func() bool { return count() >= observers }); err != nil {
		return nil, fmt.Errorf("%s: %d of %d nodes saw it %s: %w", member, count(), observers, state, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.hits[key]), nil
}

func (s *gossipSim) minAlive() int {
	s.mu.Lock()
	nodes := slices.Clone(s.nodes)
	s.mu.Unlock()
	lowest := len(nodes)
	for _, n := range nodes {
		n.mu.Lock()
		lowest = min(lowest, n.alive+1) // itself
		n.mu.Unlock()
	}
	return lowest
}

// lagging lists the nodes that see fewer than n nodes alive (themselves included).
func (s *gossipSim) lagging(n int) []*simNode {
	var out []*simNode
	for _, node := range s.nodes {
		node.mu.Lock()
		if node.alive+1 < n {
			out = append(out, node)
		}
		node.mu.Unlock()
	}
	return out
}

func (s *gossipSim) sent() int64 {
	var total int64
	for _, n := range s.nodes {
		total += n.t.sent.Load()
	}
	return total
}

func (s *gossipSim) until(timeout time.Duration, done func() bool) error {
	start := time.Now()
	next := start.Add(10 * time.Second)
	for !done() {
		if time.Since(start) > timeout {
			return fmt.Errorf("not within %v", timeout)
		}
		if time.Now().After(next) {
			s.mu.Lock()
			falseDeaths := s.falseDeaths
			s.mu.Unlock()
			logf("gossip: waiting: every node sees at least %d; %d nodes declared dead wrongly so far", s.minAlive(), falseDeaths)
			next = next.Add(10 * time.Second)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// cpuTime is the CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func quantile(d []time.Duration, q float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(q*float64(len(s)) + 0.5)
	return s[min(max(i-1, 0), len(s)-1)]
}
