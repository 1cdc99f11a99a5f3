package integration

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/cluster/storetest"
	"github.com/drayage/drayage/integration/chaos"
)

// TestChaos is drayage's fault campaign (make chaos; see package chaos): on three nodes
// with the managed plugin, rounds of concurrent operations while a random fault hits a
// node, a check after every round and a stricter one after each seed's last. It runs
// on the embedded store, then on an etcd server (where the faults include a restore of
// the store from a snapshot).
//
// In make test it is short: a few rounds of fixed seeds and one drawn at random on each
// store. CHAOS_SEED=S[,S...] replays seeds, CHAOS_ROUNDS=N sets the rounds per seed (a
// soak), CHAOS_STORE=embedded|etcd runs on one store only, CHAOS_FAULTS=KIND[,KIND...]
// draws only those faults (a soak of one fault).
func TestChaos(t *testing.T) {
	for _, s := range chaosSettingsFromEnv(t) {
		t.Run(string(s.store), func(t *testing.T) { runChaos(t, s) })
	}
}

func runChaos(t *testing.T, s chaosSettings) {
	t.Logf("chaos: seeds %v, %d rounds each, store %s", s.seeds, s.rounds, s.store)
	c := startChaos(t, s)
	began := time.Now()
	var report chaos.Report
	rounds := 0
	for i, seed := range s.seeds {
		r, n := c.campaign(i, seed)
		report.Merge(r)
		rounds += n
		if len(r.Violations) > 0 {
			break
		}
	}
	t.Log("\n" + chaos.Summary(c.history, report, s.seeds, rounds, time.Since(began)))
	for _, v := range report.Violations {
		t.Errorf("%s\nhistory of volume %s:\n%s\n%s", v, v.Volume, c.history.Of(v.Volume), c.logsOf(v.Volume))
	}
	if t.Failed() {
		t.Logf("replay: CHAOS_SEED=%d CHAOS_ROUNDS=%d CHAOS_STORE=%s make chaos", c.seed, s.rounds, s.store)
	}
}

// chaosSettings are a campaign's settings, from the environment.
type chaosSettings struct {
	seeds    []uint64
	rounds   int
	store    storeKind
	maxPause time.Duration // 0: pauses run to 10 lease TTLs
	faults   []string      // the kinds to draw from; nil: all that the store allows
}

// chaosSettingsFromEnv reads the CHAOS_ settings: a campaign per store.
func chaosSettingsFromEnv(t *testing.T) []chaosSettings {
	rounds, maxPause := 4, 15*time.Second
	if v := os.Getenv("CHAOS_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		require.NoError(t, err, "CHAOS_ROUNDS=%q: give a number of rounds per seed", v)
		rounds, maxPause = n, 0
	}
	var seeds []uint64
	if v := os.Getenv("CHAOS_SEED"); v != "" {
		for _, f := range strings.Split(v, ",") {
			seed, err := strconv.ParseUint(strings.TrimSpace(f), 10, 64)
			require.NoError(t, err, "CHAOS_SEED=%q: give seeds as numbers, comma-separated", v)
			seeds = append(seeds, seed)
		}
	}
	var faults []string
	if v := os.Getenv("CHAOS_FAULTS"); v != "" {
		for _, f := range strings.Split(v, ",") {
			require.Contains(t, chaos.Faults, f, "CHAOS_FAULTS=%q: give fault kinds from %v, comma-separated", v, chaos.Faults)
			faults = append(faults, f)
		}
	}
	campaign := func(store storeKind, fixed ...uint64) chaosSettings {
		s := chaosSettings{seeds: seeds, rounds: rounds, store: store, maxPause: maxPause, faults: faults}
		if s.seeds == nil {
			s.seeds = append(slices.Clone(fixed), rand.Uint64N(1_000_000))
		}
		return s
	}
	switch v := os.Getenv("CHAOS_STORE"); v {
	case "":
		return []chaosSettings{campaign(embeddedStore, 1, 2), campaign(etcdStore, 3)}
	case "embedded":
		return []chaosSettings{campaign(embeddedStore, 1, 2)}
	case "etcd":
		return []chaosSettings{campaign(etcdStore, 3)}
	default:
		t.Fatalf("CHAOS_STORE=%q: use embedded or etcd", v)
		return nil
	}
}

// chaosCluster is the cluster a campaign runs on, and what it recorded.
type chaosCluster struct {
	t       *testing.T
	nodes   []*node
	store   *storetest.Server // etcd, or nil for the embedded store
	cfg     chaos.Config
	history *chaos.History
	seed    uint64 // the seed running now
	rounds  int    // per seed
	watch   *recordWatch

	mu    sync.Mutex
	ops   int      // operations so far: their IDs
	trash []string // volumes to remove when the round ends (copies, created volumes)
	// made are the copies the round made, checked when it ends.
	made []madeCopy
	// restarting serializes the plugin restarts of each node.
	restarting [3]sync.Mutex
}

const chaosTTL = 5 * time.Second

func startChaos(t *testing.T, s chaosSettings) *chaosCluster {
	// Each node's state is a filesystem of its own, small enough to fill.
	nodes, server := startNodesWith(t, s.store, []string{"node-a", "node-b", "node-c"}, smallDisk,
		"DRAYAGE_SYNC_INTERVAL=1s", "DRAYAGE_METRICS_ADDR=:7796", "DRAYAGE_LEASE_TTL="+chaosTTL.String())
	c := &chaosCluster{t: t, nodes: nodes, store: server, history: &chaos.History{}, rounds: s.rounds}
	c.cfg = chaos.Config{Nodes: len(nodes), TTL: chaosTTL, MaxPause: s.maxPause}
	for _, f := range chaos.Faults {
		if s.faults != nil && !slices.Contains(s.faults, f) {
			continue
		}
		if f == chaos.FaultRestore && s.store != etcdStore {
			continue // the embedded store is restored by an operator only into a new cluster
		}
		c.cfg.Faults = append(c.cfg.Faults, f)
	}
	c.watchRecords()
	return c
}

// campaign runs one seed's rounds on a pool of new volumes (replicas 1, 2 and 3),
// checks the end state strictly, and removes the pool. It returns the checks' report
// and how many rounds ran.
func (c *chaosCluster) campaign(index int, seed uint64) (chaos.Report, int) {
	t := c.t
	c.seed = seed
	prefix := fmt.Sprintf("k%d-", index)
	c.cfg.Prefix = prefix
	c.cfg.Volumes = nil
	for copies := 1; copies <= 3; copies++ {
		name := fmt.Sprintf("%sv%d", prefix, copies)
		c.nodes[0].docker("volume", "create", "--driver", nodePlugin, "-o", fmt.Sprintf("replicas=%d", copies), "-o", "sync-interval=1s", name)
		c.cfg.Volumes = append(c.cfg.Volumes, name)
	}
	var report chaos.Report
	report.Merge(c.settle())
	base := c.leakBaseline()
	rounds := 0
	for round := range c.rounds {
		plan := chaos.PlanRound(c.cfg, seed, round)
		t.Logf("seed %d round %d: %s on %s at %s for %s; %s", seed, round, plan.Fault.Kind, c.faultNode(plan.Fault),
			plan.Fault.At, plan.Fault.For.Round(100*time.Millisecond), describeOps(plan.Ops))
		c.round(plan)
		rounds++
		r := c.settle()
		r.Merge(chaos.Check(c.history, c.cfg.Volumes, c.copies(), false))
		report.Merge(r)
		if len(r.Violations) > 0 {
			return report, rounds
		}
	}
	report.Merge(c.finalCheck(base))
	for _, v := range c.cfg.Volumes {
		c.removeWithCopies(v)
	}
	return report, rounds
}

// round runs a plan: its operations at their times, each in its own goroutine, and its
// fault, injected and healed on this one; it returns when all have ended.
func (c *chaosCluster) round(p chaos.Plan) {
	start := time.Now()
	var snapshot string
	if p.Fault.Kind == chaos.FaultRestore {
		snapshot = c.store.SnapshotEtcd(c.t)
	}
	var wg sync.WaitGroup
	for _, op := range p.Ops {
		wg.Go(func() {
			time.Sleep(time.Until(start.Add(op.At)))
			c.do(p.Round, op)
		})
	}
	time.Sleep(time.Until(start.Add(p.Fault.At)))
	c.fault(p.Round, p.Fault, snapshot)
	wg.Wait()
	c.mu.Lock()
	trash, made := c.trash, c.made
	c.trash, c.made = nil, nil
	c.mu.Unlock()
	for _, m := range made {
		for _, v := range chaos.CheckCopy(c.history, m.volume, m.copy).Violations {
			c.t.Errorf("%s\nhistory of volume %s:\n%s", v, m.volume, c.history.Of(m.volume))
		}
	}
	for _, v := range trash {
		c.removeWithCopies(v)
	}
}

// madeCopy is a copy a round made of a volume, as it was when made.
type madeCopy struct {
	volume string
	copy   *chaos.Copy
}

func describeOps(ops []chaos.OpPlan) string {
	var parts []string
	for _, op := range ops {
		s := fmt.Sprintf("%s %s on %d", op.Kind, op.Volume, op.Node)
		if op.Kind == chaos.OpWrite {
			s = fmt.Sprintf("write %d to %s on %d", op.Count, op.Volume, op.Node)
		}
		parts = append(parts, fmt.Sprintf("%s@%s", s, op.At.Round(100*time.Millisecond)))
	}
	return strings.Join(parts, ", ")
}

// dataDir is where node n holds volume name's data (on the host).
func dataDir(n *node, name string) string { return filepath.Join(n.state, "volumes", name, "data") }

// logsOf is the end of what each node logged about a volume.
func (c *chaosCluster) logsOf(volume string) string {
	var b strings.Builder
	for _, n := range c.nodes {
		var lines []string
		for _, l := range strings.Split(n.log(), "\n") {
			if volume == "" || strings.Contains(l, "volume="+volume+" ") {
				if i := strings.Index(l, "msg=\"time="); i >= 0 {
					l = l[i+5:]
				}
				lines = append(lines, l)
			}
		}
		what := "about volume " + volume
		if volume == "" {
			what = "(a problem of no one volume)"
		}
		fmt.Fprintf(&b, "node %s's log %s (last 40 lines):\n%s\n", n.name, what, strings.Join(lines[max(0, len(lines)-40):], "\n"))
	}
	return b.String()
}
