package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// managedPlugin is the managed plugin every test in this package shares.
var managedPlugin *pluginUnderTest

func TestMain(m *testing.M) {
	code, err := setUp(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration setup failed:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func setUp(m *testing.M) (int, error) {
	if os.Geteuid() != 0 {
		return 0, fmt.Errorf("integration tests drive the Docker engine and mount volumes: run them as root (make test)")
	}
	var err error
	if repoRoot, err = findRepoRoot(); err != nil {
		return 0, err
	}
	binary = filepath.Join(repoRoot, "build", "drayage")
	if os.Getenv("DRAYAGE_HOST_ONLY") == "1" {
		// make scale runs only benchmarks of daemons on the host: no engine, no plugin.
		return m.Run(), nil
	}
	if out, err := tryRun(filepath.Join(repoRoot, "scripts", "test-image.sh"), testImage); err != nil {
		return 0, fmt.Errorf("build test image: %w\n%s", err, out)
	}
	managedPlugin, err = installPlugin("drayage-test:dev")
	if err != nil {
		return 0, err
	}
	defer managedPlugin.remove()
	defer removeTestContainers()
	return m.Run(), nil
}
