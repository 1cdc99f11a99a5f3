package integration

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/drayage/drayage/integration/chaos"
)

// The faults of the campaign, each injected on a node and healed after the planned time.

// Ports the partial partitions drop: the data port, and the embedded store's client
// and peer ports (an etcd server's, on the host, for CHAOS_STORE=etcd).
const (
	dataPort          = "7792"
	embeddedStorePort = "7793:7794"
)

// signal sends sig to pid and says whether the process was still there: a daemon may
// exit meanwhile (a restart of the workload, a crash), which is no failure of the test.
func signal(t *testing.T, pid int, sig syscall.Signal) bool {
	err := syscall.Kill(pid, sig)
	if errors.Is(err, syscall.ESRCH) {
		return false
	}
	require.NoError(t, err, "signal %s to pid %d", sig, pid)
	return true
}

// fault injects f, waits its time, heals it and records it.
func (c *chaosCluster) fault(round int, f chaos.FaultPlan, snapshot string) {
	rec := &chaos.Fault{FaultPlan: f, Round: round, Node: c.faultNode(f), Start: time.Now()}
	defer func() { rec.Healed = time.Now(); c.history.AddFault(rec) }()
	n := c.nodeOf(f)
	if n == nil {
		rec.Detail = "no leader found: nothing done"
		return
	}
	script := n.engine.script()
	drop := func(rules ...[]string) {
		for _, r := range rules {
			run(c.t, script, append([]string{"drop", n.engine.dir}, r...)...)
		}
	}
	switch f.Kind {
	case chaos.FaultLeaderKill:
		if c.store != nil {
			c.store.Crash(c.t)
			rec.Detail = "the etcd server, killed and started again"
			break
		}
		fallthrough
	case chaos.FaultKillPlugin:
		if pid := n.pluginPID(); pid != 0 {
			signal(c.t, pid, syscall.SIGKILL)
			rec.Detail = fmt.Sprintf("pid %d", pid)
		}
		time.Sleep(f.For)
	case chaos.FaultCrash:
		n.crash()
		time.Sleep(f.For)
		n.restart()
	case chaos.FaultCut:
		n.cut()
		time.Sleep(f.For)
		n.heal()
	case chaos.FaultCutIn:
		drop([]string{"INPUT", "-i", "eth0"})
	case chaos.FaultCutOut:
		drop([]string{"OUTPUT", "-o", "eth0"})
	case chaos.FaultCutData:
		drop([]string{"INPUT", "-i", "eth0", "-p", "tcp", "--dport", dataPort}, []string{"OUTPUT", "-o", "eth0", "-p", "tcp", "--dport", dataPort})
	case chaos.FaultCutStore:
		if c.store != nil {
			_, port, _ := net.SplitHostPort(c.store.Addr)
			drop([]string{"OUTPUT", "-o", "eth0", "-p", "tcp", "-d", bridgeHost, "--dport", port})
		} else {
			drop([]string{"INPUT", "-i", "eth0", "-p", "tcp", "--dport", embeddedStorePort},
				[]string{"OUTPUT", "-o", "eth0", "-p", "tcp", "--dport", embeddedStorePort})
		}
	case chaos.FaultPause:
		pid := n.pluginPID()
		require.NotZero(c.t, pid, "node %s's daemon runs", n.name)
		signal(c.t, pid, syscall.SIGSTOP)
		time.Sleep(f.For)
		// A plugin restart of the workload (disable -f) may have killed the paused
		// daemon meanwhile, as it may in production: then there is nothing to resume.
		if !signal(c.t, pid, syscall.SIGCONT) {
			rec.Detail = "the daemon was killed while paused (a plugin restart)"
		}
	case chaos.FaultDiskFull:
		free := fillDisk(c.t, n)
		rec.Detail = fmt.Sprintf("%d MiB filled", free>>20)
		time.Sleep(f.For)
		freeDisk(c.t, n)
	case chaos.FaultSlowNet:
		// A slow, lossy link: 4 Mbit/s with up to 200 ms of queue, and 3% of the packets
		// coming in lost. (This kernel has no netem; tbf and iptables' statistic match
		// make the same fault.)
		run(c.t, script, "shape", n.engine.dir, "tbf", "rate", "4mbit", "burst", "32kbit", "latency", "200ms")
		drop([]string{"INPUT", "-i", "eth0", "-m", "statistic", "--mode", "random", "--probability", "0.03"})
		time.Sleep(f.For)
		run(c.t, script, "shape", n.engine.dir)
		run(c.t, script, "undrop", n.engine.dir)
	case chaos.FaultRestore:
		time.Sleep(f.For)
		c.store.RestoreEtcd(c.t, snapshot)
		c.history.AddRollback(time.Now())
		c.rewatch()
	default:
		c.t.Fatalf("fault %s: not known to the campaign", f.Kind)
	}
	switch f.Kind {
	case chaos.FaultCutIn, chaos.FaultCutOut, chaos.FaultCutData, chaos.FaultCutStore:
		time.Sleep(f.For)
		run(c.t, script, "undrop", n.engine.dir)
	}
}

// faultNode names the node a fault hits ("leader": found when it's injected).
func (c *chaosCluster) faultNode(f chaos.FaultPlan) string {
	switch {
	case f.Kind == chaos.FaultRestore:
		return "the store"
	case f.Node < 0:
		return "the store's leader"
	}
	return c.nodes[f.Node].name
}

// nodeOf is the node a fault hits: the planned one, or the embedded store's leader now
// (with an etcd server, whose faults hit the server, node-a: any will do).
func (c *chaosCluster) nodeOf(f chaos.FaultPlan) *node {
	if f.Node >= 0 {
		return c.nodes[f.Node]
	}
	if c.store != nil {
		return c.nodes[0]
	}
	for _, n := range c.nodes {
		if ms, err := storeMembers(c.t, n); err == nil {
			for _, m := range ms {
				if m.Leader {
					for _, l := range c.nodes {
						if l.name == m.Name {
							return l
						}
					}
				}
			}
		}
	}
	return nil
}

// smallDisk makes node n's state dir an ext4 filesystem of its own (1 GiB, loop-mounted),
// small enough to fill; for startNodesWith.
func smallDisk(n *node) {
	t := n.t
	img := n.state + ".img"
	run(t, "truncate", "-s", "1G", img)
	run(t, "mkfs.ext4", "-q", "-m", "0", img)
	run(t, "mount", "-o", "loop", img, n.state)
	t.Cleanup(func() { _, _ = tryRun("umount", n.state); _ = os.Remove(img) })
}

// fillDisk fills node n's state filesystem (smallDisk) to the last block and returns
// how many bytes that took; freeDisk frees them.
func fillDisk(t testing.TB, n *node) int64 {
	var st unix.Statfs_t
	require.NoError(t, unix.Statfs(n.state, &st))
	free := int64(st.Bavail) * st.Bsize
	// A disk that filled between statfs and fallocate is full too.
	_, _ = tryRun("fallocate", "-l", strconv.FormatInt(free, 10), filepath.Join(n.state, "filler"))
	return free
}

func freeDisk(t testing.TB, n *node) {
	require.NoError(t, os.Remove(filepath.Join(n.state, "filler")))
}
