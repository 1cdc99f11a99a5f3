package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// engine is a throwaway dockerd started by scripts/engine.sh, with a mount namespace of
// its own.
type engine struct {
	dir  string
	host string // -H value for the docker CLI
}

// startEngine starts an engine loaded with the test image; it stops when the test ends.
// args are more 'scripts/engine.sh start' options, such as --addr N.
func startEngine(t testing.TB, args ...string) *engine {
	t.Helper()
	// containerd's socket paths must stay short: no t.TempDir here.
	dir, err := os.MkdirTemp("", "dre-")
	require.NoError(t, err)
	e := &engine{dir: dir, host: "unix://" + filepath.Join(dir, "docker.sock")}
	t.Cleanup(func() { _, _ = tryRun(e.script(), "stop", e.dir) })
	run(t, e.script(), append(append([]string{"start", dir}, args...), testImage)...)
	return e
}

func (e *engine) script() string { return filepath.Join(repoRoot, "scripts", "engine.sh") }

// docker runs the docker CLI against this engine.
func (e *engine) docker(t testing.TB, args ...string) string {
	t.Helper()
	return run(t, "docker", append([]string{"-H", e.host}, args...)...)
}

// command builds a command that runs inside the engine's mount namespace.
func (e *engine) command(name string, args ...string) *exec.Cmd {
	return exec.Command(e.script(), append([]string{"exec", e.dir, name}, args...)...)
}

// legacyDaemon is 'drayage daemon' running on the host (not as a managed plugin).
type legacyDaemon struct {
	t      testing.TB
	engine *engine
	name   string
	root   string
	socket string
	args   []string
	cmd    *exec.Cmd
	log    *os.File
	// bin is the drayage binary to run (default: build/drayage); env, more variables for
	// the next start only.
	bin string
	env []string
	// probe is the drayage command whose success says the daemon is up (default
	// "volume ls").
	probe []string
}

// startLegacy starts drayage in legacy mode next to the engine as node name, serving
// driver name. args are more daemon flags; without --store it runs an embedded store on a
// free port. With no engine the daemon runs on the host, serving no engine.
func startLegacy(t testing.TB, e *engine, name, driver, root string, args ...string) *legacyDaemon {
	t.Helper()
	logFile, err := os.OpenFile(root+".log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	require.NoError(t, err)
	if !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--store") }) {
		args = append(args, "--embedded-addr", freeAddr())
	}
	socket := "/run/docker/plugins/" + driver + ".sock"
	if e == nil {
		socket = root + ".sock"
	}
	d := &legacyDaemon{t: t, engine: e, name: name, root: root, socket: socket, args: args, log: logFile}
	t.Cleanup(func() {
		d.kill(syscall.SIGTERM)
		_ = logFile.Close()
	})
	d.start()
	return d
}

func (d *legacyDaemon) start() {
	d.t.Helper()
	args := append([]string{"daemon", "--root", d.root, "--socket", d.socket, "--name", d.name}, d.args...)
	bin := d.bin
	if bin == "" {
		bin = binary
	}
	if d.engine != nil {
		d.cmd = d.engine.command(bin, args...)
	} else {
		d.cmd = exec.Command(bin, args...)
	}
	d.cmd.Env = append(os.Environ(), d.env...)
	d.env = nil
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	require.NoError(d.t, d.cmd.Start())
	deadline := time.Now().Add(timeout)
	for {
		probe := d.probe
		if probe == nil {
			probe = []string{"volume", "ls"}
		}
		if _, err := tryRun(binary, append([]string{"--root", d.root}, probe...)...); err == nil {
			return
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("daemon %s did not answer on its control socket within %s; its log:\n%s", d.name, timeout, d.logText())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// kill sends sig and waits for the daemon to exit.
func (d *legacyDaemon) kill(sig syscall.Signal) {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	// The script execs nsenter, which execs drayage: the pid is the daemon's.
	_ = d.cmd.Process.Signal(sig)
	done := make(chan struct{})
	go func() { _ = d.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		_ = d.cmd.Process.Kill()
		<-done
	}
	d.cmd = nil
}

func (d *legacyDaemon) logText() string {
	b, _ := os.ReadFile(d.log.Name())
	return strings.TrimSpace(string(b))
}
