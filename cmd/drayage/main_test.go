package main

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
		"port-range": "DRAYAGE_PORT_RANGE", "probe-interval": "DRAYAGE_PROBE_INTERVAL", "rate-limit": "DRAYAGE_RATE_LIMIT", "dynamic-limit": "DRAYAGE_DYNAMIC_LIMIT", "keep-replica": "DRAYAGE_KEEP_REPLICA",
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

// Every variable the managed plugin sets or exposes is a setting the daemon reads.
func TestConfigJSONVariablesAreDaemonSettings(t *testing.T) {
	b, err := os.ReadFile("../../config.json")
	require.NoError(t, err)
	var cfg struct {
		Env []struct{ Name string }
	}
	require.NoError(t, json.Unmarshal(b, &cfg))
	known := map[string]bool{}
	root := newRootCmd()
	daemonCmd, _, err := root.Find([]string{"daemon"})
	require.NoError(t, err)
	for _, fs := range []*pflag.FlagSet{daemonCmd.Flags(), root.PersistentFlags()} {
		fs.VisitAll(func(f *pflag.Flag) {
			if env, ok := f.Annotations[envAnnotation]; ok {
				known[env[0]] = true
			}
		})
	}
	require.NotEmpty(t, cfg.Env)
	for _, e := range cfg.Env {
		assert.True(t, known[e.Name], "config.json sets %s, which no daemon flag reads", e.Name)
	}
}
