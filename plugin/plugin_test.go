package plugin

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/daemon/mount/mounttest"
	"github.com/drayage/drayage/daemon/volume"
	"github.com/drayage/drayage/daemon/volume/volumetest"
	"github.com/drayage/drayage/progress"
)

// engine speaks the volume plugin protocol to a socket, as dockerd does.
type engine struct {
	t      *testing.T
	client *http.Client
}

func newEngine(t *testing.T, socket string) *engine {
	return &engine{t: t, client: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}}
}

// call posts req to /VolumeDriver.<method> and returns the decoded reply.
func (e *engine) call(method string, req any) map[string]any {
	e.t.Helper()
	return e.post("/VolumeDriver."+method, req)
}

func (e *engine) post(path string, req any) map[string]any {
	e.t.Helper()
	body, err := json.Marshal(req)
	require.NoError(e.t, err)
	resp, err := e.client.Post("http://plugin"+path, "application/vnd.docker.plugins.v1.2+json", bytes.NewReader(body))
	require.NoError(e.t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(e.t, err)
	var out map[string]any
	require.NoError(e.t, json.Unmarshal(raw, &out), "reply %s", raw)
	return out
}

// startPlugin serves a driver over a real unix socket; init says whether the manager
// finishes starting.
func startPlugin(t *testing.T, init bool) (*engine, *mounttest.Fake) {
	node := volumetest.New(t, "node-a")
	socket := filepath.Join(t.TempDir(), "drayage.sock")
	l, err := Listen(socket)
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	// Short deadlines: a call that arrives while the daemon starts waits this long.
	opts := Options{MountTimeout: 500 * time.Millisecond, CallTimeout: 500 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)}
	go func() { _ = Serve(l, NewDriver(node.Manager, opts)) }()
	if init {
		node.Init()
	}
	return newEngine(t, socket), node.Mounter
}

func TestActivateAndCapabilitiesAnswerWhileStarting(t *testing.T) {
	e, _ := startPlugin(t, false)
	act := e.post("/Plugin.Activate", nil)
	assert.Equal(t, []any{"VolumeDriver"}, act["Implements"])
	caps := e.call("Capabilities", nil)
	assert.Equal(t, map[string]any{"Scope": "global"}, caps["Capabilities"])

	got := e.call("List", nil)
	assert.Contains(t, got["Err"], `node "node-a"`)
	assert.Contains(t, got["Err"], "retry in a few seconds")
}

func TestVolumeLifecycleOverTheSocket(t *testing.T) {
	e, fake := startPlugin(t, true)

	assert.Contains(t, e.call("Get", map[string]any{"Name": "v1"})["Err"], "no such volume")
	assert.Empty(t, e.call("Create", map[string]any{"Name": "v1", "Opts": map[string]string{"mode": "0700"}})["Err"])

	got := e.call("Get", map[string]any{"Name": "v1"})
	assert.Empty(t, got["Err"])
	vol := got["Volume"].(map[string]any)
	assert.Equal(t, "v1", vol["Name"])
	assert.NotEmpty(t, vol["CreatedAt"])
	assert.Equal(t, map[string]any{"node": "node-a", "state": "idle", "mounts": float64(0), "size": float64(0)}, vol["Status"])

	mnt := e.call("Mount", map[string]any{"Name": "v1", "ID": "c1"})
	assert.Empty(t, mnt["Err"])
	mp := mnt["Mountpoint"].(string)
	assert.NotEmpty(t, fake.Source(mp))
	assert.Equal(t, mp, e.call("Path", map[string]any{"Name": "v1"})["Mountpoint"])

	list := e.call("List", nil)["Volumes"].([]any)
	require.Len(t, list, 1)
	assert.Equal(t, mp, list[0].(map[string]any)["Mountpoint"])

	rm := e.call("Remove", map[string]any{"Name": "v1"})
	assert.Contains(t, rm["Err"], `volume "v1" is mounted by 1 container on node "node-a"`)

	assert.Empty(t, e.call("Unmount", map[string]any{"Name": "v1", "ID": "c1"})["Err"])
	assert.Empty(t, e.call("Unmount", map[string]any{"Name": "v1", "ID": "c1"})["Err"], "a second unmount is harmless")
	assert.Equal(t, 0, fake.Count())
	assert.Empty(t, e.call("Remove", map[string]any{"Name": "v1"})["Err"])
	assert.Contains(t, e.call("Get", map[string]any{"Name": "v1"})["Err"], "no such volume")
}

func TestBadRequestsComeBackAsClearErrors(t *testing.T) {
	e, _ := startPlugin(t, true)
	got := e.call("Create", map[string]any{"Name": "../etc"})
	assert.Contains(t, got["Err"], `invalid volume name "../etc"`)
	got = e.call("Create", map[string]any{"Name": "v1", "Opts": map[string]string{"color": "red"}})
	assert.Contains(t, got["Err"], `invalid volume option "color": valid options are allow-privileged, from, gid, max-lag, mode, replica-nodes, replicas, sha256, sync-interval, uid`)
	got = e.call("Mount", map[string]any{"Name": "ghost", "ID": "c1"})
	assert.Contains(t, got["Err"], `volume "ghost" on node "node-a": no such volume`)
}

func TestSocketIsReplacedWhenStale(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "drayage.sock")
	l1, err := Listen(socket)
	require.NoError(t, err)
	// A crashed daemon leaves its socket file behind; the next one must still start.
	l1.(*net.UnixListener).SetUnlinkOnClose(false)
	require.NoError(t, l1.Close())
	l2, err := Listen(socket)
	require.NoError(t, err)
	require.NoError(t, l2.Close())
}

func TestInspectStatusShowsTheProgressOfAMove(t *testing.T) {
	v := toDocker(volume.Info{Name: "db", Node: "node-a", State: "migrating", Size: -1, Progress: &progress.Transfer{
		Kind: progress.KindMove, From: "node-a", To: "node-b", Counts: progress.Counts{Bytes: 41 << 20, Total: 100 << 20},
		Started: time.Unix(0, 0), Updated: time.Unix(20, 500_000_000),
	}})
	assert.Equal(t, "41% (41.0 of 100.0 MiB) from node-a, 2.0 MiB/s", v.Status["progress"])
	assert.Equal(t, "migrating", v.Status["state"])
	assert.NotContains(t, v.Status, "size", "not measured")
	assert.NotContains(t, toDocker(volume.Info{Name: "db"}).Status, "progress")
}
