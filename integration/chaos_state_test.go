package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/cluster/etcdstore"
	"github.com/drayage/drayage/cluster/identity"
	"github.com/drayage/drayage/daemon/volume"
	"github.com/drayage/drayage/integration/chaos"
)

// Invariants the campaign checks on the nodes themselves.
const (
	invSettles  = "after the faults heal, every node answers and sees the others, and no volume stays claimed"
	invComplete = "every volume is complete on its owner, and its replicas hold the same tree"
	invStaging  = "no node keeps a staging tree of a volume it owns"
	invLeaks    = "goroutines and open files back to their level before the rounds"
	invListed   = "every node lists the volumes that exist, and no removed one"
)

// settleTimeout bounds the wait for the cluster to settle after a round.
const settleTimeout = 2 * time.Minute

// settle cleans up after a round — the round's containers, a plugin a restart left
// disabled — and waits for the cluster to settle: every daemon answers and sees every
// node, no pool volume is claimed.
func (c *chaosCluster) settle() chaos.Report {
	var r chaos.Report
	for _, n := range c.nodes {
		ids, _ := tryRun("docker", "-H", n.engine.host, "ps", "-aq", "--filter", "name=chaos-")
		for _, id := range strings.Fields(ids) {
			_, _ = tryRun("docker", "-H", n.engine.host, "rm", "-f", id)
		}
		if on, _ := tryRun("docker", "-H", n.engine.host, "plugin", "inspect", "-f", "{{.Enabled}}", nodePlugin); on == "false" {
			_, _ = tryRun("docker", "-H", n.engine.host, "plugin", "enable", nodePlugin)
		}
	}
	deadline := time.Now().Add(settleTimeout)
	for {
		volume, problem := c.unsettled()
		if problem == "" {
			r.Pass(invSettles)
			return r
		}
		if time.Now().After(deadline) {
			r.Fail(invSettles, volume, "not settled %s after the round: %s", settleTimeout, problem)
			return r
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// unsettled says what keeps the cluster from being settled, and the volume concerned if
// it is one ("" if nothing).
func (c *chaosCluster) unsettled() (string, string) {
	for _, n := range c.nodes {
		seen, err := tryNodeList(n.state)
		if err != nil {
			return "", fmt.Sprintf("node %s's daemon does not answer: %v", n.name, err)
		}
		for _, m := range c.nodes {
			if m != n && seen[m.name].Reach != "ok" {
				return "", fmt.Sprintf("node %s sees node %s as %q", n.name, m.name, seen[m.name].Reach)
			}
		}
	}
	for _, v := range c.cfg.Volumes {
		info, err := c.inspect(v)
		if err != nil {
			return v, err.Error()
		}
		if info.State != volume.StateIdle || info.Claim != nil {
			return v, fmt.Sprintf("volume %s is %s on node %s, %d mounts there (%s)", v, info.State, info.Node, info.Mounts, info.Problem)
		}
	}
	return "", ""
}

// inspect asks node-a's daemon about a volume.
func (c *chaosCluster) inspect(name string) (volume.Info, error) {
	return tryInspect(c.nodes[0].state, name)
}

func (c *chaosCluster) node(name string) *node {
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	return nil
}

// copies reads every copy of the pool's volumes the nodes hold: the owner's, the
// -diverged- ones, and the others (replicas, a former owner's copy not yet judged).
func (c *chaosCluster) copies() chaos.Final {
	f := chaos.Final{Live: map[string]*chaos.Copy{}, Diverged: map[string][]*chaos.Copy{}, Others: map[string][]*chaos.Copy{}}
	for _, v := range c.cfg.Volumes {
		info, err := c.inspect(v)
		owner := ""
		if err == nil {
			owner = info.Node
		}
		for _, n := range c.nodes {
			names, _ := filepath.Glob(filepath.Join(n.state, "volumes", v+"-diverged-*"))
			for _, d := range names {
				lines, _ := logLines(filepath.Join(d, "data", "log"))
				f.Diverged[v] = append(f.Diverged[v], &chaos.Copy{Name: filepath.Base(d), Node: n.name, Lines: lines})
			}
			if _, err := os.Stat(dataDir(n, v)); err != nil {
				continue
			}
			lines, _ := logLines(filepath.Join(dataDir(n, v), "log"))
			cp := &chaos.Copy{Name: v, Node: n.name, Lines: lines}
			if n.name == owner {
				f.Live[v] = cp
			} else {
				f.Others[v] = append(f.Others[v], cp)
			}
		}
	}
	return f
}

// finalCheck is the check after a seed's last round: the replicas caught up, former
// owners have kept what diverged, and the history holds against the volumes and their
// diverged copies only; staging, listings and leaks are checked on every node.
func (c *chaosCluster) finalCheck(base map[string][2]float64) chaos.Report {
	var r chaos.Report
	deadline := time.Now().Add(settleTimeout)
	for _, v := range c.cfg.Volumes {
		for {
			problem := c.incomplete(v)
			if problem == "" {
				r.Pass(invComplete)
				break
			}
			if time.Now().After(deadline) {
				r.Fail(invComplete, v, "%s", problem)
				break
			}
			time.Sleep(time.Second)
		}
	}
	// A former owner keeps its diverged writes once no container uses its copy; give
	// it the time to judge.
	var last chaos.Report
	for {
		last = chaos.Check(c.history, c.cfg.Volumes, c.copies(), true)
		if len(last.Violations) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	r.Merge(last)
	for _, n := range c.nodes {
		entries, _ := os.ReadDir(filepath.Join(n.state, "staging"))
		for _, e := range entries {
			if !e.IsDir() {
				continue
			}
			info, err := c.inspect(e.Name())
			if err == nil && info.Node == n.name {
				r.Fail(invStaging, e.Name(), "node %s owns the volume and keeps a staging tree of it", n.name)
			} else {
				r.Pass(invStaging)
			}
		}
	}
	c.checkListed(&r)
	c.checkLeaks(&r, base)
	return r
}

// incomplete says how volume v falls short of complete: its owner holds it (the
// record's root, if any, is its tree's) and every replica it should have is ready and
// holds the owner's tree ("" if it doesn't).
func (c *chaosCluster) incomplete(v string) string {
	info, err := c.inspect(v)
	if err != nil {
		return err.Error()
	}
	owner := c.node(info.Node)
	if owner == nil {
		return fmt.Sprintf("volume %s: owner %q is no node", v, info.Node)
	}
	if _, err := os.Stat(dataDir(owner, v)); err != nil {
		return fmt.Sprintf("volume %s: its owner, node %s, holds no copy: %v", v, owner.name, err)
	}
	want := treeOf(c.t, dataDir(owner, v))
	ready := 0
	for _, rep := range info.Replicas {
		if rep.State != volume.ReplicaReady {
			continue
		}
		ready++
		if n := c.node(rep.Node); n == nil || !equalTrees(c.t, want, dataDir(n, v)) {
			return fmt.Sprintf("volume %s: node %s's ready replica differs from the owner's (node %s) copy", v, rep.Node, owner.name)
		}
	}
	if ready < info.Copies-1 {
		return fmt.Sprintf("volume %s: %d of %d replicas ready: %+v", v, ready, info.Copies-1, info.Replicas)
	}
	return ""
}

// checkListed checks that every node lists the pool, no volume a round removed, and no
// copy or created volume left over.
func (c *chaosCluster) checkListed(r *chaos.Report) {
	for _, n := range c.nodes {
		out, err := tryRun("docker", "-H", n.engine.host, "volume", "ls", "--format", "{{.Name}}")
		if err != nil {
			r.Fail(invListed, "", "node %s: docker volume ls: %v: %s", n.name, err, out)
			continue
		}
		listed := map[string]bool{}
		for _, name := range strings.Fields(out) {
			listed[name] = true
		}
		for _, v := range c.cfg.Volumes {
			r.Pass(invListed)
			if !listed[v] {
				r.Fail(invListed, v, "node %s does not list it", n.name)
			}
		}
		for name := range listed {
			if !strings.HasPrefix(name, c.cfg.Prefix+"r") && !strings.Contains(name, "-copy-") {
				continue
			}
			if c.history.ForgottenByRollback(name) {
				// Not lost and not a leftover: the restored store forgot it, its node
				// wrote its record again, and the round's removal found no volume.
				c.t.Logf("volume %s: made before its round's store restore, which forgot it; its node wrote its record again after the removal: removed again", name)
				c.removeWithCopies(name)
				continue
			}
			r.Fail(invListed, name, "node %s lists it after the round that made it removed it", n.name)
		}
	}
}

// leakBaseline is each node's goroutines and open files before the rounds.
func (c *chaosCluster) leakBaseline() map[string][2]float64 {
	base := map[string][2]float64{}
	for _, n := range c.nodes {
		m := scrape(c.t, n)
		base[n.name] = [2]float64{m["go_goroutines"], m["process_open_fds"]}
	}
	return base
}

// checkLeaks compares goroutines and open files with the baseline: a daemon may hold
// more while it works (a sync, a watch being re-made), not a number that grows with the
// rounds.
func (c *chaosCluster) checkLeaks(r *chaos.Report, base map[string][2]float64) {
	for _, n := range c.nodes {
		var now [2]float64
		// Within 1.5 times the level before, and 30 more.
		near := func() bool { return now[0] <= 1.5*base[n.name][0]+30 && now[1] <= 1.5*base[n.name][1]+30 }
		for range 30 { // settle: a sync or a pull may still be ending
			m := scrape(c.t, n)
			now = [2]float64{m["go_goroutines"], m["process_open_fds"]}
			if near() {
				break
			}
			time.Sleep(time.Second)
		}
		if !near() {
			r.Fail(invLeaks, "", "node %s: %v goroutines and %v open files, %v and %v before the rounds", n.name, now[0], now[1], base[n.name][0], base[n.name][1])
		} else {
			r.Pass(invLeaks)
		}
	}
}

// removeWithCopies removes a volume and its diverged copies, wherever they are.
func (c *chaosCluster) removeWithCopies(v string) {
	out, _ := tryRun("docker", "-H", c.nodes[0].engine.host, "volume", "ls", "-q")
	for _, name := range strings.Fields(out) {
		if name == v || strings.HasPrefix(name, v+"-diverged-") {
			if out, err := tryRun("docker", "-H", c.nodes[0].engine.host, "volume", "rm", name); err != nil {
				c.t.Logf("volume %s: removing it after its round: %v: %s", name, err, out)
			}
		}
	}
}

// recordWatch follows the volume records in the store into the history.
type recordWatch struct {
	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// watchRecords records every version of the volume records the store holds until the
// test ends, watching again from where it was when the watch breaks (a member down).
func (c *chaosCluster) watchRecords() {
	w := &recordWatch{}
	c.t.Cleanup(w.stop)
	c.watch = w
	c.rewatch()
}

// rewatch starts the watch again from the store's present (after a restore, the
// revisions went back).
func (c *chaosCluster) rewatch() {
	w := c.watch
	w.stop()
	ctx, cancel := context.WithCancel(context.Background())
	w.mu.Lock()
	w.cancel, w.done = cancel, make(chan struct{})
	done := w.done
	w.mu.Unlock()
	opts := etcdstore.Options{}
	if c.store != nil {
		opts.Endpoints = []string{c.store.Addr}
	} else {
		id, err := identity.Load(c.nodes[0].tls, c.nodes[0].name)
		if err != nil {
			c.t.Fatalf("node %s's identity: %v", c.nodes[0].name, err)
		}
		opts.TLS = id.MemberClientConfig()
		for _, n := range c.nodes {
			opts.Endpoints = append(opts.Endpoints, n.addr+":7793")
		}
	}
	go func() {
		defer close(done)
		var rev int64
		for ctx.Err() == nil {
			s, err := etcdstore.Open(ctx, opts)
			if err != nil {
				time.Sleep(time.Second)
				continue
			}
			events, err := s.Watch(ctx, "drayage/volumes/", rev)
			if err == nil {
				for ev := range events {
					rev = ev.Rev
					var v cluster.Volume
					if !ev.Deleted && json.Unmarshal(ev.Value, &v) == nil {
						c.history.AddOwner(chaos.Owner{Volume: v.Name, Node: v.Owner, Epoch: v.Epoch, At: time.Now()})
					}
				}
			}
			_ = s.Close()
			time.Sleep(200 * time.Millisecond)
		}
	}()
}

func (w *recordWatch) stop() {
	w.mu.Lock()
	cancel, done := w.cancel, w.done
	w.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}
