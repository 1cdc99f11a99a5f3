package daemon

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/cluster/backends"
	"github.com/drayage/drayage/cluster/embedded"
	"github.com/drayage/drayage/cluster/gossip"
	"github.com/drayage/drayage/daemon/transfer"
	"github.com/drayage/drayage/daemon/volume"
)

// Config is the daemon's settings; cmd/drayage fills it from flags and DRAYAGE_* variables.
type Config struct {
	// Name is this node's name (default: the host name).
	Name string
	// Root is the state dir: volume data, records, control.sock, the embedded store.
	Root string
	// MountDir is where volumes are bind-mounted for the engine (default Root/mounts). A
	// managed plugin sets it to its propagatedMount.
	MountDir string
	// MountPropagated says MountDir is a managed plugin's propagatedMount: a Mount whose
	// bind the engine does not see is refused.
	MountPropagated bool
	// MountTimeout is Mount's budget, kept below the engine's own deadlines.
	MountTimeout time.Duration
	// Version is reported in the node record.
	Version string

	// Store is the --store URL: embedded, etcd://..., consul://...
	Store string
	// StorePrefix is the key prefix in the store (default "drayage/").
	StorePrefix string
	// StoreCA, StoreCert and StoreKey are client TLS files for etcd or Consul.
	StoreCA, StoreCert, StoreKey string
	// StoreUser and StorePassword authenticate to etcd; StoreToken is Consul's ACL token.
	StoreUser, StorePassword, StoreToken string
	// EmbeddedAddr is where the embedded store listens for clients (host:port). On a
	// network, a loopback or unspecified host means the advertised address.
	EmbeddedAddr string
	// StoreVoters is how many voting members the embedded store cluster grows to (odd).
	StoreVoters int
	// StoreReplaceAfter: a voting member of the embedded store whose node is down longer
	// than this is replaced by another node (0: never).
	StoreReplaceAfter time.Duration
	// LeaseTTL is how long this node's claims outlive it if it dies or is cut off.
	LeaseTTL time.Duration

	// TLSDir holds the node's certificate, the cluster CA and the gossip key. Without a
	// certificate there the node runs alone.
	TLSDir string
	// Join lists gossip seeds, host[:port].
	Join []string
	// Advertise is the address other nodes reach this one at.
	Advertise string
	// Cluster labels gossip so that two clusters on one network never merge.
	Cluster string
	// GossipPort, ControlPort and DataPort are the listening ports; PortRange, if set,
	// picks the first free ones in LOW-HIGH instead.
	GossipPort, ControlPort, DataPort int
	PortRange                         string
	// GossipProfile names gossip's timings (gossip.ProfileLAN, the default, or
	// gossip.ProfileLarge).
	GossipProfile string
	// ProbeInterval is how often gossip probes a member (0: the profile's); a dead node
	// is declared within a few intervals.
	ProbeInterval time.Duration
	// RateLimit caps, in bytes per second, every volume this node sends (0: no cap).
	RateLimit int64
	// DynamicLimit is the largest volume a container start moves to this node.
	DynamicLimit int64
	// KeepReplica keeps this node's copy of a volume that moved away.
	KeepReplica bool
	// MetricsAddr, if set, is where /metrics is served, host:port, in plain HTTP: bind
	// it to localhost or a private network.
	MetricsAddr string
	// StreamTimeout is how long a data stream may go without a byte read or written.
	StreamTimeout time.Duration
	// StagingGrace is how long a failed pull's staging is kept for a retry, unused.
	StagingGrace time.Duration
	// MaxTransfers bounds the volumes this node sends at once (more are refused) and
	// receives at once (more wait their turn). MaxDataConns bounds the data connections
	// it serves at once.
	MaxTransfers, MaxDataConns int
	// Replicas is how many copies a volume created without the replicas option keeps.
	Replicas int
	// SyncInterval is how soon a change to a mounted replicated volume reaches its
	// replicas, unless its sync-interval option says otherwise.
	SyncInterval time.Duration
	// ReplicaReplaceAfter is how long a replica's node may be down before another node
	// takes its place.
	ReplicaReplaceAfter time.Duration
	// MaxLag is how far behind a replica may be for a Mount to promote it when its
	// volume's owner is down, unless its max-lag option says otherwise (0: 5m; negative:
	// never without --accept-loss).
	MaxLag time.Duration
	// SeedCA is a PEM file of the CAs an https source of a volume's first content must
	// chain to, relative to TLSDir unless absolute (empty: the system's).
	SeedCA string
	// S3 is how the node reaches S3 for s3:// sources: S3SecretKeyFile names a file
	// holding the secret key, relative to TLSDir unless absolute.
	S3Endpoint, S3Region, S3AccessKey, S3SecretKeyFile string
}

// Validate checks the settings and fills in defaults.
func (c *Config) Validate() error {
	if c.Name == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			return fmt.Errorf("cannot tell this node's name from the host name (%w); set --name or DRAYAGE_NAME", err)
		}
		c.Name = host
	}
	if err := volume.ValidateName(c.Name); err != nil {
		return fmt.Errorf("node name %q: use letters, digits, '_', '.' or '-' (set --name or DRAYAGE_NAME)", c.Name)
	}
	if !filepath.IsAbs(c.Root) {
		return fmt.Errorf("node %q: state dir %q must be an absolute path (--root, DRAYAGE_ROOT)", c.Name, c.Root)
	}
	if c.MountDir == "" {
		c.MountDir = filepath.Join(c.Root, "mounts")
	}
	if !filepath.IsAbs(c.MountDir) {
		return fmt.Errorf("node %q: mount dir %q must be an absolute path (--mount-dir, DRAYAGE_MOUNT_DIR)", c.Name, c.MountDir)
	}
	if c.MountTimeout < time.Second || c.MountTimeout > 110*time.Second {
		return fmt.Errorf("node %q: mount timeout %s is out of range: use 1s to 110s, below the engine's 2 minute deadline (--mount-timeout, DRAYAGE_MOUNT_TIMEOUT)", c.Name, c.MountTimeout)
	}
	if _, err := backends.Parse(c.Store); err != nil {
		return fmt.Errorf("node %q: %w (--store, DRAYAGE_STORE)", c.Name, err)
	}
	if c.StorePrefix == "" {
		c.StorePrefix = cluster.DefaultPrefix
	}
	if c.EmbeddedAddr == "" {
		c.EmbeddedAddr = "127.0.0.1:7793"
	}
	if c.StoreVoters == 0 {
		c.StoreVoters = embedded.DefaultVoters
	}
	if c.StoreReplaceAfter < 0 || c.StoreReplaceAfter > 0 && c.StoreReplaceAfter < 10*time.Second {
		return fmt.Errorf("node %q: store replace-after %s: use 0 (never) or 10s or more (longer than a reboot takes, in production) (--store-replace-after, DRAYAGE_STORE_REPLACE_AFTER)", c.Name, c.StoreReplaceAfter)
	}
	if c.StoreVoters < 1 || c.StoreVoters > 7 || c.StoreVoters%2 == 0 {
		return fmt.Errorf("node %q: %d voting store members: use 1, 3, 5 or 7 (an even count tolerates no more failures than the odd count below it) (--store-voters, DRAYAGE_STORE_VOTERS)", c.Name, c.StoreVoters)
	}
	for _, p := range []struct {
		name string
		port int
	}{{"gossip", c.GossipPort}, {"control", c.ControlPort}, {"data", c.DataPort}} {
		if p.port < 1 || p.port > 65535 {
			return fmt.Errorf("node %q: %s port %d is out of range 1-65535", c.Name, p.name, p.port)
		}
	}
	if c.PortRange != "" {
		if _, _, err := parsePortRange(c.PortRange); err != nil {
			return fmt.Errorf("node %q: %w (--port-range, DRAYAGE_PORT_RANGE)", c.Name, err)
		}
	}
	if _, err := gossip.ProfileConfig(c.GossipProfile); err != nil {
		return fmt.Errorf("node %q: gossip profile %q: use %s (up to about a hundred nodes) or %s (more) (--gossip-profile, DRAYAGE_GOSSIP_PROFILE)",
			c.Name, c.GossipProfile, gossip.ProfileLAN, gossip.ProfileLarge)
	}
	if c.MetricsAddr != "" {
		_, port, err := net.SplitHostPort(c.MetricsAddr)
		if err != nil || port == "" {
			return fmt.Errorf("node %q: metrics address %q: want HOST:PORT, e.g. 127.0.0.1:7796 (--metrics-addr, DRAYAGE_METRICS_ADDR)", c.Name, c.MetricsAddr)
		}
		if spec, _ := backends.Parse(c.Store); spec.Kind == backends.KindEmbedded {
			if taken := embeddedPorts(c.EmbeddedAddr); slices.Contains(taken, port) {
				return fmt.Errorf("node %q: metrics address %q: port %s is the embedded store's (it listens on %s and %s); pick another port, e.g. 7796 (--metrics-addr, DRAYAGE_METRICS_ADDR)",
					c.Name, c.MetricsAddr, port, taken[0], taken[1])
			}
		}
	}
	if c.StreamTimeout == 0 {
		c.StreamTimeout = transfer.DefaultIdleTimeout
	}
	if c.MaxTransfers == 0 {
		c.MaxTransfers = transfer.DefaultMaxTransfers
	}
	if c.MaxDataConns == 0 {
		c.MaxDataConns = transfer.DefaultMaxConns
	}
	if c.StagingGrace < 0 {
		return fmt.Errorf("node %q: staging grace %s is negative (--staging-grace, DRAYAGE_STAGING_GRACE)", c.Name, c.StagingGrace)
	}
	if c.StreamTimeout < time.Second {
		return fmt.Errorf("node %q: stream timeout %s is too short: use 1s or more (--stream-timeout, DRAYAGE_STREAM_TIMEOUT)", c.Name, c.StreamTimeout)
	}
	if c.MaxTransfers < 1 || c.MaxDataConns < 1 {
		return fmt.Errorf("node %q: the limits on transfers (%d) and data connections (%d) must be at least 1 (--max-transfers, DRAYAGE_MAX_TRANSFERS; --max-data-conns, DRAYAGE_MAX_DATA_CONNS)",
			c.Name, c.MaxTransfers, c.MaxDataConns)
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.Replicas < 1 || c.Replicas > volume.MaxReplicas {
		return fmt.Errorf("node %q: %d replicas: use 1 to %d (--replicas, DRAYAGE_REPLICAS)", c.Name, c.Replicas, volume.MaxReplicas)
	}
	if c.SyncInterval == 0 {
		c.SyncInterval = 30 * time.Second
	}
	if c.SyncInterval < volume.MinSyncInterval {
		return fmt.Errorf("node %q: sync interval %s is too short: use %s or more (--sync-interval, DRAYAGE_SYNC_INTERVAL)", c.Name, c.SyncInterval, volume.MinSyncInterval)
	}
	if c.ReplicaReplaceAfter == 0 {
		c.ReplicaReplaceAfter = 10 * time.Minute
	}
	if c.MaxLag == 0 {
		c.MaxLag = 5 * time.Minute
	}
	if c.ReplicaReplaceAfter < 10*time.Second {
		return fmt.Errorf("node %q: replica replace-after %s is too short: use 10s or more (longer than a reboot takes, in production) (--replica-replace-after, DRAYAGE_REPLICA_REPLACE_AFTER)", c.Name, c.ReplicaReplaceAfter)
	}
	if c.LeaseTTL < 2*time.Second || c.LeaseTTL > 10*time.Minute {
		return fmt.Errorf("node %q: lease TTL %s is out of range: use 2s to 10m (--lease-ttl, DRAYAGE_LEASE_TTL)", c.Name, c.LeaseTTL)
	}
	return nil
}

// embeddedPorts are the client and peer ports of the embedded store at addr.
func embeddedPorts(addr string) []string {
	_, port, err := net.SplitHostPort(addr)
	n, perr := strconv.Atoi(port)
	if err != nil || perr != nil {
		return nil
	}
	return []string{port, strconv.Itoa(n + 1)}
}

// Config returns the validated settings.
func (d *Daemon) Config() Config { return d.cfg }
