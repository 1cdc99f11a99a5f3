package volume

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/cluster/clustertest"
)

// BenchmarkList: List of BENCH_LIST_VOLUMES volumes (10,000) held by other nodes, on the
// embedded store (make scale measures 100,000 on real stores through the plugin).
func BenchmarkList(b *testing.B) {
	ctx := context.Background()
	reg := clustertest.Registry(b)
	count := 10000
	if v := os.Getenv("BENCH_LIST_VOLUMES"); v != "" {
		_, err := fmt.Sscan(v, &count)
		require.NoError(b, err)
	}
	var wg sync.WaitGroup
	for w := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < count; i += 32 {
				v := cluster.Volume{Name: fmt.Sprintf("rec%06d", i), Owner: fmt.Sprintf("node-%04d", i%1000), Epoch: 1,
					Size: int64(i) << 12, Created: time.Now().UTC(), Root: strings.Repeat("ab", 32)}
				_, _, err := reg.Create(ctx, v)
				require.NoError(b, err)
			}
		}()
	}
	wg.Wait()
	f := &fixture{node: "node-a", root: b.TempDir(), mountDir: b.TempDir(), reg: reg}
	m := NewManager(Config{Node: f.node, Root: f.root, MountDir: f.mountDir, Logger: slog.New(slog.DiscardHandler)})
	b.Cleanup(m.Close)
	require.NoError(b, m.Init(ctx, reg, clustertest.Lease(b)))
	b.ResetTimer()
	for b.Loop() {
		infos, err := m.List(ctx)
		require.NoError(b, err)
		require.Len(b, infos, count)
	}
}
