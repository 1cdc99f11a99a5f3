package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/daemon/volume"
)

const (
	testImage = "drayage-test/busybox:latest"
	// containerLabel marks every container a test starts, for cleanup.
	containerLabel = "drayage-integration=1"
)

var (
	repoRoot string
	binary   string // build/drayage
)

// run runs a command and returns its combined output, failing the test on error.
func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := tryRun(name, args...)
	require.NoError(t, err, "%s %s:\n%s", name, strings.Join(args, " "), out)
	return out
}

// tryRun runs a command and returns its combined output and error.
func tryRun(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return strings.TrimSpace(out.String()), err
}

// mustFail runs a command that must fail and returns its output.
func mustFail(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := tryRun(name, args...)
	require.Error(t, err, "%s %s should fail, printed:\n%s", name, strings.Join(args, " "), out)
	return out
}

// docker runs the docker CLI.
func docker(t testing.TB, args ...string) string {
	t.Helper()
	return run(t, "docker", args...)
}

// container runs a one-off container of the test image and returns its output.
func container(t testing.TB, args ...string) string {
	t.Helper()
	return docker(t, append([]string{"run", "--rm", "--label", containerLabel}, args...)...)
}

// inspect asks the drayage CLI on the host about a volume.
func inspect(t testing.TB, root, name string) volume.Info {
	t.Helper()
	info, err := tryInspect(root, name)
	require.NoError(t, err)
	return info
}

// tryInspect is inspect that returns what went wrong.
func tryInspect(root, name string) (volume.Info, error) {
	out, err := tryRun(binary, "--root", root, "volume", "inspect", "--json", name)
	if err != nil {
		return volume.Info{}, fmt.Errorf("volume %s: inspect: %w: %s", name, err, out)
	}
	var infos []volume.Info
	if err := json.Unmarshal([]byte(out), &infos); err != nil || len(infos) != 1 {
		return volume.Info{}, fmt.Errorf("volume %s: inspect printed %s", name, out)
	}
	return infos[0], nil
}

// uniqueName makes a volume name that no earlier run left behind.
func uniqueName(t testing.TB) string {
	return fmt.Sprintf("%s-%d", strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")), time.Now().UnixNano()%1e6)
}

// removeVolumeAtEnd removes a volume when the test ends (its containers first).
func removeVolumeAtEnd(t testing.TB, name string) {
	t.Cleanup(func() {
		removeTestContainers()
		_, _ = tryRun("docker", "volume", "rm", "-f", name)
	})
}

func removeTestContainers() {
	ids, _ := tryRun("docker", "ps", "-aq", "--filter", "label="+containerLabel)
	for _, id := range strings.Fields(ids) {
		_, _ = tryRun("docker", "rm", "-f", id)
	}
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func findRepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working dir")
		}
		dir = parent
	}
}

// splitRef splits "name:tag".
func splitRef(ref string) (string, string) {
	name, tag, ok := strings.Cut(ref, ":")
	if !ok {
		tag = "latest"
	}
	return name, tag
}

func splitLines(s string) []string { return strings.Fields(s) }

// timeout bounds every wait in these tests.
const timeout = 30 * time.Second

// freeAddr returns a loopback host:port nobody listens on right now.
func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}
