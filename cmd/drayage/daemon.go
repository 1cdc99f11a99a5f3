package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/docker/go-units"
	"github.com/spf13/cobra"

	"github.com/drayage/drayage/cluster/gossip"
	"github.com/drayage/drayage/daemon"
	"github.com/drayage/drayage/plugin"
)

const defaultSocket = "/run/docker/plugins/drayage.sock"

func newDaemonCmd(g *globals) *cobra.Command {
	var cfg daemon.Config
	var socket, rateLimit, dynamicLimit string
	cmd := &cobra.Command{
		Use:   "daemon",
		Short: "Run the node daemon and serve the Docker volume plugin API",
		Long: `Run the node daemon. It listens on the plugin socket at once, then opens the state dir
and restores the mounts of volumes in use. Every flag can also be set with the
DRAYAGE_* variable named in its help; a flag wins over its variable.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Root = g.root
			cfg.Version = version
			if rateLimit != "" && rateLimit != "0" {
				n, err := units.FromHumanSize(rateLimit)
				if err != nil || n <= 0 {
					return fmt.Errorf("--rate-limit %q: want bytes per second such as 100MB or 1GB (DRAYAGE_RATE_LIMIT)", rateLimit)
				}
				cfg.RateLimit = n
			}
			n, err := units.RAMInBytes(dynamicLimit)
			if err != nil || n < 0 {
				return fmt.Errorf("--dynamic-limit %q: want a size such as 5GiB or 500MiB (DRAYAGE_DYNAMIC_LIMIT)", dynamicLimit)
			}
			cfg.DynamicLimit = n
			if cfg.MaxLag == 0 {
				cfg.MaxLag = -1 // 0 says never promote without --accept-loss
			}
			log, err := newLogger(g, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return runDaemon(ctx, cfg, socket, log)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Name, "name", "", "this node's name (default: the host name)")
	f.StringVar(&socket, "socket", defaultSocket, "Docker volume plugin socket; the driver name is the file name without .sock")
	f.StringVar(&cfg.MountDir, "mount-dir", "", "where volumes are mounted for the engine (default: ROOT/mounts)")
	f.BoolVar(&cfg.MountPropagated, "mount-propagated", false, "the mount dir is a managed plugin's propagated mount: refuse a Mount whose bind the engine does not see")
	f.DurationVar(&cfg.MountTimeout, "mount-timeout", 25*time.Second, "budget for one Mount call, below the engine's own deadline")
	f.StringVar(&cfg.Store, "store", "embedded", "cluster store: embedded, etcd://HOST:PORT[,HOST:PORT...] or consul://HOST:PORT")
	f.StringVar(&cfg.StorePrefix, "store-prefix", "drayage/", "key prefix in the cluster store")
	f.StringVar(&cfg.StoreCA, "store-ca", "", "CA certificate (PEM) that signed the store's certificate")
	f.StringVar(&cfg.StoreCert, "store-cert", "", "client certificate (PEM) for the store")
	f.StringVar(&cfg.StoreKey, "store-key", "", "client key (PEM) for the store")
	f.StringVar(&cfg.StoreUser, "store-user", "", "etcd user name")
	f.StringVar(&cfg.StorePassword, "store-password", "", "etcd password (prefer the variable to the flag)")
	f.StringVar(&cfg.StoreToken, "store-token", "", "Consul ACL token (prefer the variable to the flag)")
	f.StringVar(&cfg.EmbeddedAddr, "embedded-addr", "127.0.0.1:7793", "where the embedded store listens for clients (its peers on the next port); on a network a loopback host means the advertised address, where the other nodes' members reach it")
	f.IntVar(&cfg.StoreVoters, "store-voters", 3, "voting members the embedded store cluster grows to, as nodes join (1, 3, 5 or 7); further nodes are its clients")
	f.DurationVar(&cfg.StoreReplaceAfter, "store-replace-after", 15*time.Minute, "replace a voting member of the embedded store whose node is down this long by another node (0: never)")
	f.DurationVar(&cfg.LeaseTTL, "lease-ttl", 10*time.Second, "how long this node's claims outlive it when it dies or is cut off")
	f.StringVar(&cfg.TLSDir, "tls-dir", "/etc/drayage", "the node's certificate, the cluster CA and the gossip key (see 'drayage tls init'); without them the node runs alone")
	f.StringSliceVar(&cfg.Join, "join", nil, "gossip seeds to join, host[:port], comma-separated")
	f.StringVar(&cfg.Advertise, "advertise", "", "address other nodes reach this one at (default: the first non-loopback address)")
	f.StringVar(&cfg.Cluster, "cluster", "drayage", "cluster name: nodes of another cluster are not admitted to gossip")
	f.IntVar(&cfg.GossipPort, "gossip-port", 7790, "gossip port (TCP and UDP)")
	f.IntVar(&cfg.ControlPort, "control-port", 7791, "control port (gRPC over mutual TLS)")
	f.IntVar(&cfg.DataPort, "data-port", 7792, "data port (volume streams over mutual TLS)")
	f.StringVar(&cfg.PortRange, "port-range", "", "pick the gossip, control and data ports from the first free ones in LOW-HIGH instead")
	f.StringVar(&cfg.GossipProfile, "gossip-profile", gossip.ProfileLAN, "gossip timings: lan (up to about a hundred nodes) or large (hundreds to thousands: probes twice as often, a dead node declared in under 5 s at 1,000 nodes; see make scale)")
	f.DurationVar(&cfg.ProbeInterval, "probe-interval", 0, "how often gossip probes a member (default: the profile's, 1s for lan, 500ms for large); a dead node is declared within a few intervals")
	f.StringVar(&rateLimit, "rate-limit", "0", "cap on the bandwidth of every volume this node sends, per second (e.g. 100MB; 0: none)")
	f.StringVar(&dynamicLimit, "dynamic-limit", "5GiB", "largest volume a container start moves to this node (e.g. 5GiB, 500MiB)")
	f.BoolVar(&cfg.KeepReplica, "keep-replica", false, "keep this node's copy of a volume that moved away, so a move back sends only what changed")
	f.StringVar(&cfg.MetricsAddr, "metrics-addr", "", "serve Prometheus metrics at http://HOST:PORT/metrics, plain HTTP: bind it to localhost or a private network (default: off)")
	f.DurationVar(&cfg.StreamTimeout, "stream-timeout", time.Minute, "how long a volume's data stream may go without a byte before the transfer is given up")
	f.IntVar(&cfg.MaxTransfers, "max-transfers", 8, "volumes this node sends at once, and receives at once; more wait (receiving) or are refused until one is done (sending)")
	f.IntVar(&cfg.MaxDataConns, "max-data-conns", 128, "data connections this node serves at once, handshakes included; more are closed at once")
	f.DurationVar(&cfg.StagingGrace, "staging-grace", 6*time.Hour, "how long what a failed pull received is kept for a retry to resume from, unused, before it is deleted")
	f.IntVar(&cfg.Replicas, "replicas", 1, "copies of a volume created without -o replicas: its owner's and the rest as warm replicas on other nodes (1 to 5)")
	f.DurationVar(&cfg.SyncInterval, "sync-interval", 30*time.Second, "how soon a change to a mounted replicated volume reaches its replicas, unless the volume's -o sync-interval says otherwise")
	f.DurationVar(&cfg.ReplicaReplaceAfter, "replica-replace-after", 10*time.Minute, "how long a replica's node may be down before another node takes its place")
	f.DurationVar(&cfg.MaxLag, "max-lag", 5*time.Minute, "how far behind a replica may be for a Mount to promote it when its volume's owner is down, unless the volume's -o max-lag says otherwise; 0: never without 'drayage volume promote --accept-loss'")
	f.StringVar(&cfg.SeedCA, "seed-ca", "", "CA certificates (PEM file, in the TLS dir unless the path is absolute) an https source of a volume's content (-o from=https://...) must chain to (default: the system's)")
	f.StringVar(&cfg.S3Endpoint, "s3-endpoint", "", "S3 server for s3:// sources, https://HOST[:PORT] (default: AWS)")
	f.StringVar(&cfg.S3Region, "s3-region", "", "S3 region (default: the server's)")
	f.StringVar(&cfg.S3AccessKey, "s3-access-key", "", "S3 access key ID (default: anonymous)")
	f.StringVar(&cfg.S3SecretKeyFile, "s3-secret-key-file", "", "file holding the S3 secret key, in the TLS dir unless the path is absolute")
	withEnv(f, "name", "socket", "mount-dir", "mount-propagated", "mount-timeout", "store", "store-prefix", "store-ca", "store-cert",
		"store-key", "store-user", "store-password", "store-token", "embedded-addr", "store-voters", "store-replace-after", "lease-ttl", "tls-dir", "join",
		"advertise", "cluster", "gossip-port", "control-port", "data-port", "port-range", "gossip-profile", "probe-interval", "rate-limit", "dynamic-limit", "keep-replica", "metrics-addr",
		"stream-timeout", "max-transfers", "max-data-conns", "staging-grace", "replicas", "sync-interval", "replica-replace-after", "max-lag",
		"seed-ca", "s3-endpoint", "s3-region", "s3-access-key", "s3-secret-key-file")
	return cmd
}

// runDaemon serves the plugin socket first, then initialises the node, so the engine's
// first dials (4 tries, 3 s apart) always connect.
func runDaemon(ctx context.Context, cfg daemon.Config, socket string, log *slog.Logger) error {
	d, err := daemon.New(cfg, log)
	if err != nil {
		return err
	}
	cfg = d.Config()
	log = log.With("node", cfg.Name)
	l, err := plugin.Listen(socket)
	if err != nil {
		return fmt.Errorf("node %q: %w; is another drayage daemon running?", cfg.Name, err)
	}
	defer l.Close()
	serving, stopServing := context.WithCancel(ctx)
	defer stopServing() // runs before l.Close: the listener's end is then expected
	driver := plugin.NewDriver(d.Volumes(), plugin.Options{MountTimeout: cfg.MountTimeout, Logger: log})
	go func() {
		if err := plugin.Serve(l, driver); err != nil && serving.Err() == nil {
			log.Error("plugin socket stopped", "socket", socket, "err", err)
		}
	}()
	log.Info("plugin socket listening", "socket", socket, "version", version)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			if err := d.ReloadTLS(); err != nil {
				log.Error("SIGHUP: node certificate not reloaded", "err", err)
			}
		}
	}()
	return d.Run(ctx)
}
