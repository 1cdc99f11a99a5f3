package integration

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/drayage/drayage/cluster/storetest"
)

// Anyone who reaches the store can write a record (here a plain etcd; the embedded store
// admits only the cluster's nodes). A record naming another owner, or marking a volume
// for removal, makes no node delete anything: the new owner must confirm it holds the
// volume, and the node that asked for a removal must confirm it asked.
func TestForgedRecordsChangeNoDataAndAreReported(t *testing.T) {
	etcd := storetest.StartEtcd(t, storetest.ServerOptions{})
	nodes := startHostCluster(t, etcd.URL, []string{"node-1", "node-2"})
	n1, n2 := nodes[0], nodes[1]
	for _, v := range []string{"moved", "removed", "removed-by"} {
		n1.create(t, v, "rows of "+v, nil)
	}
	etcdForge(t, etcd.Addr, "moved", func(r map[string]any) { r["owner"], r["epoch"] = "node-2", 2 })
	etcdForge(t, etcd.Addr, "removed", func(r map[string]any) { r["removing"] = true })
	etcdForge(t, etcd.Addr, "removed-by", func(r map[string]any) { r["removing"], r["removed_by"] = true, "node-2" })

	eventually(t, timeout, "node-1 to report the three records it does not obey", func() bool {
		return n1.refused(t, "unconfirmed") >= 3
	})
	time.Sleep(2 * time.Second) // it would have acted within milliseconds
	for _, v := range []string{"moved", "removed", "removed-by"} {
		b, err := os.ReadFile(filepath.Join(n1.data(v), "table"))
		require.NoError(t, err, "node-1 keeps volume %s", v)
		assert.Equal(t, "rows of "+v, string(b))
	}
	log := n1.logText()
	assert.Contains(t, log, `the record of volume \"moved\" says node \"node-2\" holds it at epoch 2, but node \"node-2\" does not confirm it`)
	assert.Contains(t, log, `volume \"removed\" is marked for removal at epoch 1, but the record names no node that asked for it; not obeyed`)
	assert.Contains(t, log, `volume \"removed-by\" is marked for removal at epoch 1, but node \"node-2\", which the record says asked for it, does not confirm it`)
	assert.NoDirExists(t, filepath.Join(n2.root, "volumes", "moved"))
}

// An etcd snapshot taken before a volume moved, restored later, names the old owner at
// the old epoch and knows nothing of volumes made since. Nothing is deleted anywhere:
// the node with the newest copy writes each record again, and the volumes work.
func TestRestoringAnOldStoreSnapshotLosesNothing(t *testing.T) {
	etcd := storetest.StartEtcd(t, storetest.ServerOptions{})
	nodes := startHostCluster(t, etcd.URL, []string{"node-1", "node-2"})
	n1, n2 := nodes[0], nodes[1]
	n1.create(t, "moved", "rows before the snapshot", nil)
	n1.create(t, "stays", "rows that stay", nil)
	snapshot := etcd.SnapshotEtcd(t)

	n2.drayage(t, "volume", "move", "moved", "--to", "node-2")
	require.NoError(t, os.WriteFile(filepath.Join(n2.data("moved"), "table"), []byte("rows after the move"), 0o644))
	eventually(t, timeout, "node-1 to drop its copy once node-2 confirms it", func() bool {
		_, err := os.Stat(n1.data("moved"))
		return os.IsNotExist(err)
	})
	n2.create(t, "after", "made after the snapshot", nil)

	etcd.RestoreEtcd(t, snapshot)
	assert.Equal(t, "node-1", etcdRecord(t, etcd.Addr, "moved")["owner"], "the restored store names the old owner")
	eventually(t, 2*timeout, "node-2 to write the records of its newer copies again", func() bool {
		out, err := tryRun("etcdctl", "--endpoints="+etcd.Addr, "get", "--print-value-only", "drayage/volumes/after")
		return err == nil && out != "" && etcdRecord(t, etcd.Addr, "moved")["owner"] == "node-2"
	})
	assert.EqualValues(t, 2, etcdRecord(t, etcd.Addr, "moved")["epoch"])
	for v, want := range map[string]string{"moved": "rows after the move", "after": "made after the snapshot"} {
		b, err := os.ReadFile(filepath.Join(n2.data(v), "table"))
		require.NoError(t, err)
		assert.Equal(t, want, string(b))
	}
	b, err := os.ReadFile(filepath.Join(n1.data("stays"), "table"))
	require.NoError(t, err)
	assert.Equal(t, "rows that stay", string(b))
	assert.GreaterOrEqual(t, n2.refused(t, "older"), 1.0, "the rolled-back record is reported")
	assert.Contains(t, n2.logText(), `the record of volume \"moved\" says node \"node-1\" holds it at epoch 1, older than node \"node-2\"'s copy (epoch 2)`)

	// And the volume moves on as before.
	n1.drayage(t, "volume", "move", "moved", "--to", "node-1")
	b, err = os.ReadFile(filepath.Join(n1.data("moved"), "table"))
	require.NoError(t, err)
	assert.Equal(t, "rows after the move", string(b))
}

// A node paused (SIGSTOP) while a container uses its volume loses its lease, and with it
// its claim. Its mount mark stays: rm from another node is refused, with what to do, and
// nothing is lost; when the node resumes, its mount is claimed again.
func TestRmOfAVolumeMountedOnAPausedOwnerIsRefusedAndLosesNothing(t *testing.T) {
	etcd := storetest.StartEtcd(t, storetest.ServerOptions{})
	nodes := startHostCluster(t, etcd.URL, []string{"node-1", "node-2"})
	n1, n2 := nodes[0], nodes[1]
	n1.create(t, "db", "rows", nil)
	mp := n1.must(t, "Mount", map[string]any{"Name": "db", "ID": "c1"})["Mountpoint"].(string)
	require.NoError(t, os.WriteFile(filepath.Join(mp, "written-while-mounted"), []byte("by a container"), 0o644))

	pid := n1.cmd.Process.Pid
	require.NoError(t, syscall.Kill(pid, syscall.SIGSTOP))
	resumed := false
	defer func() {
		if !resumed {
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	}()
	eventually(t, timeout, "node-1's lease to lapse", func() bool { return inspect(t, n2.root, "db").Claim == nil })
	info := inspect(t, n2.root, "db")
	assert.Equal(t, "mounted", info.State, "still shown mounted")
	assert.Contains(t, info.Problem, "stopped renewing its lease")

	out := n2.drayageFails(t, "volume", "rm", "db")
	assert.Contains(t, out, `cannot remove volume "db": it is mounted on node "node-1" by 1 container, and node "node-1" has stopped renewing its lease`)
	assert.Contains(t, out, "'drayage volume rm --force db'")
	reply := n2.driver(t, "Remove", map[string]any{"Name": "db"})
	assert.Contains(t, reply["Err"], `it is mounted on node "node-1" by 1 container`, "docker volume rm is refused too")
	out = n2.drayageFails(t, "volume", "move", "db", "--to", "node-2")
	assert.Contains(t, out, `volume "db" is held by node "node-1", which is down`, "paused, it is down for gossip too")

	require.NoError(t, syscall.Kill(pid, syscall.SIGCONT))
	resumed = true
	eventually(t, timeout, "node-1 to claim its mount again", func() bool { return inspect(t, n2.root, "db").Claim != nil })
	out = n2.drayageFails(t, "volume", "rm", "db")
	assert.Contains(t, out, `mounted on node "node-1" by 1 container`)
	b, err := os.ReadFile(filepath.Join(n1.data("db"), "written-while-mounted"))
	require.NoError(t, err)
	assert.Equal(t, "by a container", string(b), "nothing the container wrote was lost")

	n1.must(t, "Unmount", map[string]any{"Name": "db", "ID": "c1"})
	n2.drayage(t, "volume", "rm", "db")
	eventually(t, timeout, "node-1 to delete the removed volume", func() bool {
		_, err := os.Stat(n1.data("db"))
		return os.IsNotExist(err)
	})
}

// A move killed (SIGKILL) at each point after the data arrived: while staging is made
// durable, before the copy is installed, between installing it and committing it, and
// after committing it. Each leaves the old volume or the complete new one, and the next
// move completes.
func TestAMoveKilledAtAnyPointLeavesTheOldOrTheNewVolume(t *testing.T) {
	etcd := storetest.StartEtcd(t, storetest.ServerOptions{})
	nodes := startHostCluster(t, etcd.URL, []string{"node-1", "node-2"}, "node-2")
	n1, n2 := nodes[0], nodes[1]
	n1.create(t, "db", "rows", nil)
	for i := range 20 {
		require.NoError(t, os.WriteFile(filepath.Join(n1.data("db"), "f"+string(rune('a'+i))), []byte(strings.Repeat("x", 1000*i)), 0o644))
	}
	whole := func(n *hostNode) {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(n.data("db"), "table"))
		require.NoError(t, err, "node %s holds the volume", n.name)
		assert.Equal(t, "rows", string(b))
		for i := range 20 {
			fi, err := os.Stat(filepath.Join(n.data("db"), "f"+string(rune('a'+i))))
			require.NoError(t, err)
			assert.EqualValues(t, 1000*i, fi.Size())
		}
	}
	for _, point := range []string{"pull-finish", "install", "commit", "committed"} {
		n2.kill(syscall.SIGTERM)
		n2.env = []string{"DRAYAGE_FAILPOINTS=" + point}
		n2.start()
		meshed(t, nodes)
		m := startMove(t, n2.root, "db", "node-2")
		eventually(t, timeout, "node-2 to reach "+point, func() bool {
			if m.ended() {
				t.Fatalf("the move ended before node-2 reached %s: %s\nnode-2's log:\n%s", point, m.out.String(), n2.logText())
			}
			return strings.Contains(n2.logText(), "failpoint "+point+" reached")
		})
		n2.kill(syscall.SIGKILL)
		<-m.done
		require.Error(t, m.err, "the move stops with node-2")
		n2.start() // without the failpoint
		meshed(t, nodes)
		holder := func() (owner, other *hostNode) {
			if inspect(t, n1.root, "db").Node == "node-2" {
				return n2, n1
			}
			return n1, n2
		}
		eventually(t, timeout, "the volume to settle after a kill at "+point, func() bool {
			if inspect(t, n1.root, "db").State != "idle" {
				return false
			}
			_, other := holder()
			_, err := os.Stat(other.data("db"))
			return os.IsNotExist(err)
		})
		owner, _ := holder()
		t.Logf("killed at %s: the volume is with %s", point, owner.name)
		whole(owner)
		if point == "committed" {
			assert.Equal(t, n2, owner, "the commit happened: node-2 holds it, and node-1 dropped its copy on node-2's word")
		} else {
			assert.Equal(t, n1, owner, "no commit: node-1 holds it, untouched")
		}
		// The next move completes.
		if owner == n1 {
			n2.drayage(t, "volume", "move", "db", "--to", "node-2")
			whole(n2)
		}
		n1.drayage(t, "volume", "move", "db", "--to", "node-1")
		whole(n1)
	}
}

// What a container could use to gain privileges on another node (setuid files, file
// capabilities, trusted.* attributes, devices) travels only with a volume created with
// allow-privileged=true, and a mount inside a volume never travels nor is deleted with
// it. A volume without the option is mounted nosuid,nodev.
func TestPrivilegedContentAndMountsInsideAVolumeStayWhereTheyAre(t *testing.T) {
	etcd := storetest.StartEtcd(t, storetest.ServerOptions{})
	nodes := startHostCluster(t, etcd.URL, []string{"node-1", "node-2"})
	n1, n2 := nodes[0], nodes[1]
	outside := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(outside, "secret"), []byte("the host's"), 0o600))
	for v, opts := range map[string]map[string]string{"plain": nil, "priv": {"allow-privileged": "true"}} {
		n1.create(t, v, "rows", opts)
		d := n1.data(v)
		require.NoError(t, os.WriteFile(filepath.Join(d, "su"), []byte("#!/bin/sh\n"), 0o755))
		require.NoError(t, os.Chmod(filepath.Join(d, "su"), 0o755|os.ModeSetuid))
		require.NoError(t, os.WriteFile(filepath.Join(d, "ping"), []byte("x"), 0o755))
		require.NoError(t, unix.Setxattr(filepath.Join(d, "ping"), "security.capability", capNetRaw(), 0))
		require.NoError(t, unix.Setxattr(filepath.Join(d, "table"), "trusted.overlay.opaque", []byte("y"), 0))
		require.NoError(t, os.Mkdir(filepath.Join(d, "mnt"), 0o755))
		require.NoError(t, unix.Mount(outside, filepath.Join(d, "mnt"), "", unix.MS_BIND, ""))
		t.Cleanup(func() { _ = unix.Unmount(filepath.Join(d, "mnt"), unix.MNT_DETACH) })
	}
	n1.create(t, "dev", "rows", nil)
	require.NoError(t, unix.Mknod(filepath.Join(n1.data("dev"), "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))

	// Mounted here: nosuid,nodev unless the volume allows privileged content.
	for v, nosuid := range map[string]bool{"plain": true, "priv": false} {
		mp := n1.must(t, "Mount", map[string]any{"Name": v, "ID": "c1"})["Mountpoint"].(string)
		var st unix.Statfs_t
		require.NoError(t, unix.Statfs(mp, &st))
		assert.Equal(t, nosuid, st.Flags&unix.ST_NOSUID != 0, "%s: nosuid", v)
		assert.Equal(t, nosuid, st.Flags&unix.ST_NODEV != 0, "%s: nodev", v)
		n1.must(t, "Unmount", map[string]any{"Name": v, "ID": "c1"})
	}

	n2.drayage(t, "volume", "move", "plain", "--to", "node-2")
	n2.drayage(t, "volume", "move", "priv", "--to", "node-2")
	mode := func(p string) os.FileMode { fi, err := os.Stat(p); require.NoError(t, err); return fi.Mode() }
	has := func(p, x string) bool { _, err := unix.Lgetxattr(p, x, nil); return err == nil }
	plain, priv := n2.data("plain"), n2.data("priv")
	assert.Zero(t, mode(filepath.Join(plain, "su"))&os.ModeSetuid, "stripped without allow-privileged")
	assert.False(t, has(filepath.Join(plain, "ping"), "security.capability"))
	assert.False(t, has(filepath.Join(plain, "table"), "trusted.overlay.opaque"))
	assert.NotZero(t, mode(filepath.Join(priv, "su"))&os.ModeSetuid, "kept with allow-privileged")
	assert.True(t, has(filepath.Join(priv, "ping"), "security.capability"))
	assert.True(t, has(filepath.Join(priv, "table"), "trusted.overlay.opaque"))
	for _, d := range []string{plain, priv} {
		assert.NoDirExists(t, filepath.Join(d, "mnt"), "the mount inside the volume did not travel")
	}
	assert.Contains(t, n2.logText(), "stripped privileged content from a volume created without allow-privileged")
	assert.Contains(t, n1.logText(), "left mount points inside the volume out of the transfer")
	assert.FileExists(t, filepath.Join(outside, "secret"), "node-1 dropping its copies deleted nothing of what was mounted in them")
	assert.Contains(t, n1.logText(), "something is mounted inside it")

	out := n2.drayageFails(t, "volume", "move", "dev", "--to", "node-2")
	assert.Contains(t, out, `"null" is a device node; devices move only with a volume created with -o allow-privileged=true`)
	assert.FileExists(t, filepath.Join(n1.data("dev"), "null"), "the volume stays whole where it was")
}

// capNetRaw is a file capability granting CAP_NET_RAW (struct vfs_cap_data, revision 2).
func capNetRaw() []byte {
	b := make([]byte, 20)
	b[3] = 0x02 // revision 2
	b[0] = 1    // effective
	b[5] = 0x20 // permitted: CAP_NET_RAW (bit 13)
	return b
}
