package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/daemon/control"
)

// runStatusDaemon runs a single-node daemon with an embedded store until the test ends,
// and returns it once its control socket answers.
func runStatusDaemon(t *testing.T, log *slog.Logger) (*Daemon, *control.Client) {
	t.Helper()
	dir := t.TempDir()
	cfg := Config{
		Name: "node-a", Root: filepath.Join(dir, "state"), Version: "1.2.3", MountTimeout: 25 * time.Second,
		Store: "embedded", EmbeddedAddr: fmt.Sprintf("127.0.0.1:%d", freePort(t)), LeaseTTL: 10 * time.Second, TLSDir: filepath.Join(dir, "tls"),
		GossipPort: 7790, ControlPort: 7791, DataPort: 7792,
	}
	d := runDaemon(t, cfg, log)
	c := control.NewClient(cfg.Root)
	require.Eventually(t, func() bool {
		_, err := c.ListVolumes(context.Background())
		return err == nil
	}, 30*time.Second, 50*time.Millisecond, "the daemon's control socket answers")
	return d, c
}

func TestStatusReportsTheNodeTheStoreAndTheVolumesHeldHere(t *testing.T) {
	ctx := context.Background()
	var logs syncBuffer
	d, c := runStatusDaemon(t, slog.New(slog.NewJSONHandler(&logs, nil)))
	require.NoError(t, d.Volumes().Create(ctx, "v1", nil))
	require.NoError(t, d.Volumes().Create(ctx, "v2", nil))

	s, err := c.Status(ctx)
	require.NoError(t, err)
	assert.Equal(t, "node-a", s.Node.Name)
	assert.Equal(t, "1.2.3", s.Node.Version)
	assert.Equal(t, d.Config().Root, s.Node.Root)
	assert.Empty(t, s.Node.Gossip, "a node without certificates runs alone")
	assert.WithinDuration(t, time.Now(), s.Node.Started, time.Minute)

	assert.Equal(t, "embedded", s.Store.Kind)
	assert.Equal(t, "drayage/", s.Store.Prefix)
	assert.True(t, s.Store.OK, s.Store.Error)
	assert.Positive(t, s.Store.LatencyMS)

	require.Eventually(t, func() bool {
		s, err = c.Status(ctx)
		return err == nil && len(s.Members) == 1
	}, 5*time.Second, 50*time.Millisecond, "the node's record is written at start")
	assert.Equal(t, "node-a", s.Members[0].Name)
	assert.True(t, s.Members[0].Self)
	assert.Equal(t, "alive", s.Members[0].State)

	assert.Equal(t, control.VolumeCounts{Total: 2, ByState: map[string]int{"idle": 2}}, s.Volumes)
	assert.Empty(t, s.Transfers)
	assert.NotNil(t, s.Transfers, "an empty list, not null, for scripts")

	// Every line the daemon logged names the node; those about a volume name it too.
	var aboutVolumes int
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &rec), line)
		assert.Equal(t, "node-a", rec["node"], line)
		if strings.Contains(rec["msg"].(string), "volume") {
			assert.NotEmpty(t, rec["volume"], line)
			aboutVolumes++
		}
	}
	assert.Equal(t, 2, aboutVolumes, "created volume v1 and v2")
}

// syncBuffer is a bytes.Buffer safe for the daemon's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// hangingStore is a cluster store whose reads never answer.
type hangingStore struct{ cluster.Store }

func (hangingStore) Get(ctx context.Context, _ string) (cluster.KV, error) {
	<-ctx.Done()
	return cluster.KV{}, ctx.Err()
}

func TestStatusSaysWhenTheStoreDoesNotAnswer(t *testing.T) {
	d := &Daemon{cfg: Config{Name: "node-a", Store: "etcd://10.0.0.9:2379,10.0.0.10:2379", StorePrefix: "drayage/"},
		reg: cluster.NewRegistry(hangingStore{}, "drayage/")}
	start := time.Now()
	st := d.storeStatus(context.Background())
	assert.Less(t, time.Since(start), statusTimeout+time.Second, "the read is timed out")
	assert.Equal(t, "etcd", st.Kind)
	assert.Equal(t, []string{"10.0.0.9:2379", "10.0.0.10:2379"}, st.Endpoints)
	assert.False(t, st.OK)
	assert.Contains(t, st.Error, "no answer within 2s")
}
