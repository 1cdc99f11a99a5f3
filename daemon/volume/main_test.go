package volume

import (
	"testing"

	"github.com/drayage/drayage/cluster/clustertest"
)

// Every test leaves no goroutine running: pulls, size recorders and watches end with
// the Manager.
func TestMain(m *testing.M) { clustertest.Main(m) }
