package main

import (
	"bytes"
	"encoding/json"
	"os"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/daemon/control"
)

// parse runs a throwaway command with one env-enabled flag and returns its value.
func parse(t *testing.T, args ...string) (time.Duration, error) {
	var d time.Duration
	cmd := &cobra.Command{Use: "x", PersistentPreRunE: func(cmd *cobra.Command, _ []string) error { return applyEnv(cmd) }, RunE: func(*cobra.Command, []string) error { return nil }}
	cmd.Flags().DurationVar(&d, "mount-timeout", 25*time.Second, "budget")
	withEnv(cmd.Flags(), "mount-timeout")
	cmd.SetArgs(args)
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetErr(&bytes.Buffer{})
	err := cmd.Execute()
	return d, err
}

func TestFlagBeatsVariableBeatsDefault(t *testing.T) {
	d, err := parse(t)
	require.NoError(t, err)
	assert.Equal(t, 25*time.Second, d)

	t.Setenv("DRAYAGE_MOUNT_TIMEOUT", "10s")
	d, err = parse(t)
	require.NoError(t, err)
	assert.Equal(t, 10*time.Second, d)

	d, err = parse(t, "--mount-timeout", "5s")
	require.NoError(t, err)
	assert.Equal(t, 5*time.Second, d)
}

func TestBadVariableNamesItself(t *testing.T) {
	t.Setenv("DRAYAGE_MOUNT_TIMEOUT", "soon")
	_, err := parse(t)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `DRAYAGE_MOUNT_TIMEOUT="soon"`)
}

func TestEveryDaemonFlagHasItsVariable(t *testing.T) {
	root := newRootCmd()
	daemonCmd, _, err := root.Find([]string{"daemon"})
	require.NoError(t, err)
	want := map[string]string{
		"name": "DRAYAGE_NAME", "socket": "DRAYAGE_SOCKET", "mount-dir": "DRAYAGE_MOUNT_DIR",
		"mount-timeout": "DRAYAGE_MOUNT_TIMEOUT", "store": "DRAYAGE_STORE", "store-prefix": "DRAYAGE_STORE_PREFIX",
		"store-ca": "DRAYAGE_STORE_CA", "store-cert": "DRAYAGE_STORE_CERT", "store-key": "DRAYAGE_STORE_KEY",
		"store-user": "DRAYAGE_STORE_USER", "store-password": "DRAYAGE_STORE_PASSWORD", "store-token": "DRAYAGE_STORE_TOKEN",
		"embedded-addr": "DRAYAGE_EMBEDDED_ADDR", "lease-ttl": "DRAYAGE_LEASE_TTL", "tls-dir": "DRAYAGE_TLS_DIR",
		"join": "DRAYAGE_JOIN", "advertise": "DRAYAGE_ADVERTISE", "cluster": "DRAYAGE_CLUSTER",
		"gossip-port": "DRAYAGE_GOSSIP_PORT", "control-port": "DRAYAGE_CONTROL_PORT", "data-port": "DRAYAGE_DATA_PORT",
		"port-range": "DRAYAGE_PORT_RANGE", "gossip-profile": "DRAYAGE_GOSSIP_PROFILE", "probe-interval": "DRAYAGE_PROBE_INTERVAL", "rate-limit": "DRAYAGE_RATE_LIMIT", "dynamic-limit": "DRAYAGE_DYNAMIC_LIMIT", "keep-replica": "DRAYAGE_KEEP_REPLICA",
		"metrics-addr": "DRAYAGE_METRICS_ADDR", "replicas": "DRAYAGE_REPLICAS", "sync-interval": "DRAYAGE_SYNC_INTERVAL",
		"replica-replace-after": "DRAYAGE_REPLICA_REPLACE_AFTER", "max-lag": "DRAYAGE_MAX_LAG",
	}
	for flag, env := range want {
		f := daemonCmd.Flags().Lookup(flag)
		require.NotNil(t, f, flag)
		assert.Equal(t, []string{env}, f.Annotations[envAnnotation], flag)
	}
	for flag, env := range map[string]string{"root": "DRAYAGE_ROOT", "log-level": "DRAYAGE_LOG_LEVEL", "log-format": "DRAYAGE_LOG_FORMAT"} {
		f := root.PersistentFlags().Lookup(flag)
		require.NotNil(t, f, flag)
		assert.Equal(t, []string{env}, f.Annotations[envAnnotation], flag)
	}
}

// Every variable the managed plugin sets or exposes is a setting the daemon reads, and
// every setting is exposed.
func TestConfigJSONVariablesAreDaemonSettings(t *testing.T) {
	b, err := os.ReadFile("../../config.json")
	require.NoError(t, err)
	var cfg struct {
		Env []struct{ Name string }
	}
	require.NoError(t, json.Unmarshal(b, &cfg))
	known := map[string]bool{}
	for _, env := range daemonSettings(t) {
		known[env] = true
	}
	require.NotEmpty(t, cfg.Env)
	exposed := map[string]bool{}
	for _, e := range cfg.Env {
		assert.True(t, known[e.Name], "config.json sets %s, which no daemon flag reads", e.Name)
		exposed[e.Name] = true
	}
	for env := range known {
		assert.True(t, exposed[env], "the daemon reads %s, but the managed plugin does not expose it (config.json): 'docker plugin set' would refuse it", env)
	}
}

// The README's settings table and the daemon's flags agree: every flag it names exists
// with the variable it names, and every setting is in it.
func TestREADMESettingsTableMatchesTheFlags(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	settings := daemonSettings(t)
	_, table, ok := strings.Cut(string(b), "\n## Settings\n")
	require.True(t, ok, "README has a Settings section")
	table, _, _ = strings.Cut(table, "\n## ")
	flagRE, envRE := regexp.MustCompile("`--([a-z0-9-]+)`"), regexp.MustCompile("`(DRAYAGE_[A-Z0-9_]+)`")
	documented := map[string]bool{}
	for _, line := range strings.Split(table, "\n") {
		cols := strings.Split(line, "|")
		if len(cols) < 4 || !strings.Contains(cols[1], "`--") {
			continue
		}
		flags, envs := flagRE.FindAllStringSubmatch(cols[1], -1), envRE.FindAllStringSubmatch(cols[2], -1)
		for i, f := range flags {
			env, ok := settings[f[1]]
			if !assert.True(t, ok, "README documents --%s, which the daemon does not have", f[1]) {
				continue
			}
			documented[f[1]] = true
			if i < len(envs) { // later variables may be abbreviated (…_CERT)
				assert.Equal(t, env, envs[i][1], "README pairs --%s with the wrong variable", f[1])
			}
		}
	}
	for flag := range settings {
		assert.True(t, documented[flag], "--%s is missing from the README's settings table", flag)
	}
}

// daemonSettings maps every daemon setting's flag to its variable.
func daemonSettings(t *testing.T) map[string]string {
	t.Helper()
	root := newRootCmd()
	daemonCmd, _, err := root.Find([]string{"daemon"})
	require.NoError(t, err)
	settings := map[string]string{}
	for _, fs := range []*pflag.FlagSet{daemonCmd.Flags(), root.PersistentFlags()} {
		fs.VisitAll(func(f *pflag.Flag) {
			if env, ok := f.Annotations[envAnnotation]; ok {
				settings[f.Name] = env[0]
			}
		})
	}
	return settings
}

func TestVersionSaysCommitGoAndProtocol(t *testing.T) {
	var b bytes.Buffer
	printVersion(&b)
	out := b.String()
	assert.Contains(t, out, "drayage "+version+"\n")
	assert.Contains(t, out, "commit:   "+commit+"\n")
	assert.Contains(t, out, "go:       "+runtime.Version())
	assert.Contains(t, out, "protocol: 1\n")
}

func TestNodeLsMarksAMemberOfAnotherProtocol(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, printNodes(&b, []control.NodeInfo{
		{Name: "node-a", State: "alive", Version: "1.1", Protocol: "1", Self: true},
		{Name: "node-b", State: "alive", Version: "1.1", Protocol: "1", Reach: "ok"},
		{Name: "node-c", State: "alive", Version: "9.0", Protocol: "9", Reach: "refused"},
	}))
	lines := strings.Split(b.String(), "\n")
	assert.Contains(t, lines[0], "PROTOCOL")
	assert.NotContains(t, lines[2], "differs")
	assert.Contains(t, lines[3], "9 (differs from 1)")
}
