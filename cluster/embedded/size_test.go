package embedded_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/cluster"
)

// BenchmarkTenThousandVolumes measures what the embedded store costs with 10,000
// volume records on a cluster of three members in this process: the part of a member's
// database in use (and the same empty, measured first, as the floor; the file itself is
// preallocated), the Go heap of this
// process per member, a List of them all, and a Create. Run it with
// go test -run '^$' -bench TenThousand -benchtime 1x ./cluster/embedded/
func BenchmarkTenThousandVolumes(b *testing.B) {
	stores, opts := threeMembers(b)
	defer func() {
		for _, s := range stores {
			_ = s.Close()
		}
	}()
	reg := cluster.NewRegistry(stores["node-a"], "")
	ctx := context.Background()
	dbInUse := func() float64 {
		st, err := stores["node-a"].Client().Status(ctx, opts["node-a"].ClientAddr)
		require.NoError(b, err)
		return float64(st.DbSizeInUse) / (1 << 20)
	}
	empty := dbInUse()
	runtime.GC()
	var mem0 runtime.MemStats
	runtime.ReadMemStats(&mem0)
	start := time.Now()
	const n = 10000
	for i := range n {
		_, _, err := reg.Create(ctx, cluster.Volume{Name: fmt.Sprintf("vol-%05d", i), Owner: "node-a", Created: time.Now(),
			Size: 1 << 30, Options: map[string]string{"mode": "0755"}})
		require.NoError(b, err)
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/n, "µs/create")
	start = time.Now()
	es, err := reg.List(ctx)
	require.NoError(b, err)
	require.Len(b, es, n)
	b.ReportMetric(float64(time.Since(start).Milliseconds()), "ms/list")
	runtime.GC()
	var mem runtime.MemStats
	runtime.ReadMemStats(&mem)
	b.ReportMetric(float64(mem.HeapInuse)/(1<<20)/3, "heap-MiB/member")
	b.ReportMetric(float64(mem.HeapInuse-mem0.HeapInuse)/(1<<20)/3, "heap-MiB-added/member")
	b.ReportMetric(dbInUse(), "db-in-use-MiB")
	b.ReportMetric(empty, "empty-db-in-use-MiB")
}
