package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/cluster/storetest"
	"github.com/drayage/drayage/daemon/volume"
)

// Two nodes (each its own engine, state dir and daemon) share one real etcd.
func TestTwoNodesShareOneVolumeListThroughEtcd(t *testing.T) {
	srv := storetest.StartEtcd(t, storetest.ServerOptions{})
	testSharedStore(t, srv.URL, "2s", 15*time.Second, func(t *testing.T) string {
		return run(t, "etcdctl", "--endpoints="+srv.Addr, "get", "--prefix", "drayage/")
	})
}

// The same with one real Consul server.
func TestTwoNodesShareOneVolumeListThroughConsul(t *testing.T) {
	srv := storetest.StartConsul(t, storetest.ServerOptions{})
	consul := os.Getenv("DRAYAGE_CONSUL")
	if consul == "" {
		consul = filepath.Join(repoRoot, ".tools", "bin", "consul")
	}
	// Consul sessions last at least 10 s and lapse up to twice that after the holder dies.
	testSharedStore(t, srv.URL, "10s", 40*time.Second, func(t *testing.T) string {
		return run(t, consul, "kv", "get", "-http-addr="+srv.Addr, "-recurse", "drayage/")
	})
}

func listVolumes(t *testing.T, root string) []volume.Info {
	t.Helper()
	var infos []volume.Info
	out := run(t, binary, "--root", root, "volume", "ls", "--json")
	require.NoError(t, json.Unmarshal([]byte(out), &infos), out)
	return infos
}

func testSharedStore(t *testing.T, storeURL, ttl string, expiry time.Duration, dump func(t *testing.T) string) {
	ea, eb := startEngine(t), startEngine(t)
	base := t.TempDir()
	ra, rb := filepath.Join(base, "a"), filepath.Join(base, "b")
	da := startLegacy(t, ea, "node-a", "drayage", ra, "--store", storeURL, "--lease-ttl", ttl)
	startLegacy(t, eb, "node-b", "drayage", rb, "--store", storeURL, "--lease-ttl", ttl)
	runOn := func(e *engine, args ...string) string {
		return e.docker(t, append([]string{"run", "--rm", "--network", "none"}, args...)...)
	}

	ea.docker(t, "volume", "create", "--driver", "drayage", "shared")
	runOn(ea, "-v", "shared:/data", testImage, "sh", "-c", "echo from-a > /data/f")
	eb.docker(t, "volume", "create", "--driver", "drayage", "logs")

	// Both nodes list the same volumes, each with the node that holds it.
	for _, root := range []string{ra, rb} {
		infos := listVolumes(t, root)
		require.Len(t, infos, 2, root)
		assert.Equal(t, "logs", infos[0].Name)
		assert.Equal(t, "node-b", infos[0].Node)
		assert.Equal(t, "shared", infos[1].Name)
		assert.Equal(t, "node-a", infos[1].Node)
	}
	assert.ElementsMatch(t, []string{"logs", "shared"}, splitLines(eb.docker(t, "volume", "ls", "-q")),
		"node-b's engine lists node-a's volume too")

	// The same name created on node-b is the same volume: no duplicate, no empty copy.
	eb.docker(t, "volume", "create", "--driver", "drayage", "shared")
	assert.NoDirExists(t, filepath.Join(rb, "volumes", "shared"))
	assert.Equal(t, "node-a", inspect(t, rb, "shared").Node)

	// It can't be mounted on node-b yet: the error says where it is.
	out := mustFail(t, "docker", "-H", eb.host, "run", "--rm", "--network", "none", "-v", "shared:/data", testImage, "true")
	assert.Contains(t, out, `volume "shared" is held by node "node-a", not "node-b"`)

	// Mounted on node-a: node-b sees it, and can't remove it.
	id := ea.docker(t, "run", "-d", "--network", "none", "-v", "shared:/data", testImage, "sleep", "3600")
	info := inspect(t, rb, "shared")
	assert.Equal(t, "mounted", info.State)
	require.NotNil(t, info.Claim)
	assert.Equal(t, "node-a", info.Claim.Node)
	assert.Equal(t, 1, info.Mounts)
	out = mustFail(t, "docker", "-H", eb.host, "volume", "rm", "shared")
	assert.Contains(t, out, `volume "shared" is mounted on node "node-a" by 1 container; stop and remove the containers using it there`)

	// The records are in the store under the documented prefix.
	records := dump(t)
	for _, want := range []string{"drayage/volumes/shared", `"owner":"node-a"`, "drayage/claims/shared", `"kind":"mount"`,
		"drayage/volumes/logs", "drayage/nodes/node-a", "drayage/nodes/node-b"} {
		assert.Contains(t, records, want)
	}

	// node-a's daemon dies: its claim lapses with its lease, and the record stays whole.
	// Its container may still write: the volume stays mounted, by its mark.
	da.kill(syscall.SIGKILL)
	eventually(t, expiry, "the dead node's claim to lapse", func() bool { return inspect(t, rb, "shared").Claim == nil })
	info = inspect(t, rb, "shared")
	assert.Equal(t, "node-a", info.Node)
	assert.Equal(t, uint64(1), info.Epoch)
	assert.Equal(t, "mounted", info.State)
	assert.Contains(t, info.Problem, `mounted on node "node-a" by 1 container, but that node stopped renewing its lease`)
	out = mustFail(t, "docker", "-H", eb.host, "volume", "rm", "shared")
	assert.Contains(t, out, `cannot remove volume "shared": it is mounted on node "node-a" by 1 container`)
	// It comes back and claims the volume its container still uses.
	da.start()
	eventually(t, timeout, "node-a to claim its mounted volume again", func() bool { return inspect(t, rb, "shared").Claim != nil })

	// Removed from node-b once unused: node-a deletes its data.
	ea.docker(t, "rm", "-f", id)
	eventually(t, timeout, "the claim to be released", func() bool { return inspect(t, rb, "shared").State == "idle" })
	eb.docker(t, "volume", "rm", "shared")
	eventually(t, timeout, "node-a to delete the removed volume's data", func() bool {
		_, err := os.Stat(filepath.Join(ra, "volumes", "shared"))
		return os.IsNotExist(err)
	})
	infos := listVolumes(t, ra)
	require.Len(t, infos, 1)
	assert.Equal(t, "logs", infos[0].Name)
}
