package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// pluginUnderTest is a managed plugin installed in the engine with its own state dir.
type pluginUnderTest struct {
	ref       string
	state     string // host dir mounted as the plugin's state dir
	tls       string
	storeAddr string // where its embedded store listens
}

// installPlugin builds the plugin with 'make plugin', points its state and TLS mounts at
// fresh dirs and enables it.
func installPlugin(ref string) (*pluginUnderTest, error) {
	base, err := os.MkdirTemp("", "drayage-it-")
	if err != nil {
		return nil, err
	}
	p := &pluginUnderTest{ref: ref, state: filepath.Join(base, "state"), tls: filepath.Join(base, "tls"), storeAddr: freeAddr()}
	for _, d := range []string{p.state, p.tls} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	if err := p.build(); err != nil {
		return nil, err
	}
	if err := p.configure(); err != nil {
		return nil, err
	}
	return p, p.enable()
}

func (p *pluginUnderTest) build() error {
	name, tag := splitRef(p.ref)
	cmd := exec.Command("make", "--no-print-directory", "-C", repoRoot, "plugin", "PLUGIN="+name, "TAG="+tag)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("make plugin: %w\n%s", err, out)
	}
	return nil
}

func (p *pluginUnderTest) configure() error {
	// The plugin shares the host's network: its embedded store gets a port of its own.
	if out, err := tryRun("docker", "plugin", "set", p.ref,
		"state.source="+p.state, "tls.source="+p.tls, "DRAYAGE_NAME=it-node", "DRAYAGE_LOG_LEVEL=debug",
		"DRAYAGE_EMBEDDED_ADDR="+p.storeAddr); err != nil {
		return fmt.Errorf("docker plugin set: %w\n%s", err, out)
	}
	return nil
}

func (p *pluginUnderTest) enable() error {
	if out, err := tryRun("docker", "plugin", "enable", p.ref); err != nil {
		return fmt.Errorf("docker plugin enable %s: %w\n%s", p.ref, err, out)
	}
	return nil
}

func (p *pluginUnderTest) disable(force bool) error {
	args := []string{"plugin", "disable"}
	if force {
		args = append(args, "-f")
	}
	if out, err := tryRun("docker", append(args, p.ref)...); err != nil {
		return fmt.Errorf("docker plugin disable %s: %w\n%s", p.ref, err, out)
	}
	return nil
}

// remove takes the plugin, its volumes and its dirs away.
func (p *pluginUnderTest) remove() {
	removeTestContainers()
	if out, err := tryRun("docker", "volume", "ls", "-q", "--filter", "driver="+p.ref); err == nil {
		for _, v := range splitLines(out) {
			_, _ = tryRun("docker", "volume", "rm", "-f", v)
		}
	}
	_, _ = tryRun("docker", "plugin", "disable", "-f", p.ref)
	_, _ = tryRun("docker", "plugin", "rm", "-f", p.ref)
	_ = os.RemoveAll(filepath.Dir(p.state))
}
