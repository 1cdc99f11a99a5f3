// Command drayage is the drayage node daemon and its command-line client.
package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// defaultRoot is the state dir of both deployments.
const defaultRoot = "/var/lib/drayage"

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "drayage:", err)
		os.Exit(1)
	}
}

// globals are the settings every subcommand shares.
type globals struct {
	root      string
	logLevel  string
	logFormat string
}

func newRootCmd() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "drayage",
		Short: "Docker volumes that follow their containers from node to node",
		Long: `drayage is a Docker volume plugin and node daemon. A volume lives on one node's disk;
when a container that uses it starts on another node, drayage moves the files there,
verified, before the container starts.

Shell completion, with volume and node names from the local daemon: see
'drayage completion bash|zsh|fish --help'.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return applyEnv(cmd)
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.root, "root", defaultRoot, "state dir: volume data, records and control.sock")
	pf.StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	pf.StringVar(&g.logFormat, "log-format", "text", "log format: text or json")
	withEnv(pf, "root", "log-level", "log-format")
	root.AddCommand(newDaemonCmd(g), newVolumeCmd(g), newNodeCmd(g), newStoreCmd(g), newBackupCmd(g), newStatusCmd(g), newTLSCmd(), newVersionCmd())
	return root
}

// envName is the variable that sets a flag: --mount-timeout is DRAYAGE_MOUNT_TIMEOUT.
func envName(flag string) string {
	return "DRAYAGE_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// envAnnotation marks the flags that a DRAYAGE_* variable may set.
const envAnnotation = "drayage_env"

// withEnv marks flags as settable from their DRAYAGE_* variable and says so in the help.
func withEnv(fs *pflag.FlagSet, names ...string) {
	for _, name := range names {
		f := fs.Lookup(name)
		_ = fs.SetAnnotation(name, envAnnotation, []string{envName(name)})
		f.Usage += " (env " + envName(name) + ")"
	}
}

// applyEnv sets each env-enabled flag the command line left alone from its variable, so
// a flag beats the variable and the variable beats the default.
func applyEnv(cmd *cobra.Command) error {
	var err error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		env, ok := f.Annotations[envAnnotation]
		if !ok || f.Changed || err != nil {
			return
		}
		if v, set := os.LookupEnv(env[0]); set && v != "" {
			if serr := f.Value.Set(v); serr != nil {
				err = fmt.Errorf("%s=%q: %w", env[0], v, serr)
			}
		}
	})
	return err
}

// newLogger builds the process logger from --log-level and --log-format, writing to w
// (the command's stderr).
func newLogger(g *globals, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", g.logLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch g.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: use text or json", g.logFormat)
}
