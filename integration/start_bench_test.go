package integration

import (
	"testing"
	"time"
)

// BenchmarkContainerStartWithRemoteVolume measures what the closing question of mount-time
// migration asks: how long a container takes to start on node-b with a 1 GiB volume that
// node-a holds, against the raw pull of the same volume ('drayage volume move', no
// container), and against the same start with the volume already local. Both nodes are engines with the managed plugin, as in the tests. Run it
// with 'go test -run=^$ -bench=ContainerStart -benchtime=3x ./integration/' (root).
func BenchmarkContainerStartWithRemoteVolume(b *testing.B) {
	nodes := startNodes(b, etcdStore, []string{"node-a", "node-b"})
	na, nb := nodes[0], nodes[1]
	vol := "-v=gib:/data"
	na.docker("volume", "create", "--driver", nodePlugin, "gib")
	na.run(vol, testImage, "sh", "-c", "cd /data && for i in 1 2 3 4 5 6 7 8; do head -c 134217728 /dev/urandom > f$i; done")
	var pull, start, local time.Duration
	b.ResetTimer()
	for range b.N {
		// Raw pull: node-b takes the volume, then gives it back the same way.
		t0 := time.Now()
		nb.drayage("volume", "move", "gib", "--to", "node-b")
		pull += time.Since(t0)
		na.drayage("volume", "move", "gib", "--to", "node-a")
		// Time to container start: docker run on node-b, whose Mount pulls the volume.
		t0 = time.Now()
		nb.run(vol, testImage, "true")
		start += time.Since(t0)
		// The same container start with the volume already there: what a start costs anyway.
		t0 = time.Now()
		nb.run(vol, testImage, "true")
		local += time.Since(t0)
		na.drayage("volume", "move", "gib", "--to", "node-a")
	}
	b.StopTimer()
	b.ReportMetric(pull.Seconds()/float64(b.N), "s/pull")
	b.ReportMetric(start.Seconds()/float64(b.N), "s/start")
	b.ReportMetric(local.Seconds()/float64(b.N), "s/local-start")
	b.ReportMetric(start.Seconds()/pull.Seconds(), "start/pull")
	b.ReportMetric((start-local).Seconds()/pull.Seconds(), "(start-local)/pull")
}
