package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/docker/go-connections/sockets"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/cluster/backends"
	"github.com/drayage/drayage/cluster/embedded"
	"github.com/drayage/drayage/cluster/gossip"
	"github.com/drayage/drayage/cluster/identity"
	"github.com/drayage/drayage/daemon/control"
	"github.com/drayage/drayage/daemon/metrics"
	"github.com/drayage/drayage/daemon/mount"
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
	// EmbeddedAddr is where the embedded store listens for clients (host:port).
	EmbeddedAddr string
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
	// ProbeInterval is how often gossip probes a member; a dead node is declared within
	// a few intervals.
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
	if c.ProbeInterval <= 0 {
		c.ProbeInterval = time.Second
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

// Daemon is one node's agent.
type Daemon struct {
	cfg     Config
	log     *slog.Logger
	vols    *volume.Manager
	reg     *cluster.Registry
	net     atomic.Pointer[network]
	metrics *metrics.Metrics
	// started is when the daemon was made, for its uptime.
	started time.Time
}

// New returns a daemon whose volume manager answers "starting" until Run initialises it.
func New(cfg Config, log *slog.Logger) (*Daemon, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log = log.With("node", cfg.Name)
	m := metrics.New(metrics.Options{Node: cfg.Name, Version: cfg.Version})
	vols := volume.NewManager(volume.Config{
		Node:     cfg.Name,
		Root:     cfg.Root,
		MountDir: cfg.MountDir,
		Mounter:  mount.Bind{},
		Logger:   log,
		Metrics:  m,

		DynamicLimit: cfg.DynamicLimit,
		KeepReplica:  cfg.KeepReplica,
		StagingGrace: cfg.StagingGrace,
	})
	m.SetVolumeStates(vols.LocalStates)
	return &Daemon{cfg: cfg, log: log, vols: vols, metrics: m, started: time.Now()}, nil
}

// Config returns the validated settings.
func (d *Daemon) Config() Config { return d.cfg }

// Volumes is the node's volume manager.
func (d *Daemon) Volumes() *volume.Manager { return d.vols }

// Metrics is the node's metrics, served on Config.MetricsAddr.
func (d *Daemon) Metrics() *metrics.Metrics { return d.metrics }

// Run connects to the cluster store, initialises the node and serves the control API
// until ctx ends.
func (d *Daemon) Run(ctx context.Context) error {
	start := time.Now()
	if err := os.MkdirAll(d.cfg.Root, 0o700); err != nil {
		return fmt.Errorf("node %q: create state dir %s: %w", d.cfg.Name, d.cfg.Root, err)
	}
	if d.cfg.MetricsAddr != "" {
		stop, err := d.serveMetrics()
		if err != nil {
			return err
		}
		defer stop()
	}
	id, err := d.loadIdentity()
	if err != nil {
		return err
	}
	store, err := d.openStore(ctx, id)
	if err != nil {
		return err
	}
	defer store.Close()
	store = d.metrics.Store(store)
	reg := cluster.NewRegistry(store, d.cfg.StorePrefix)
	d.reg = reg
	lease, err := store.Grant(ctx, d.cfg.LeaseTTL)
	if err != nil {
		return fmt.Errorf("node %q: cannot take a lease in the cluster store: %w", d.cfg.Name, err)
	}
	if err := d.vols.Init(ctx, reg, lease); err != nil {
		return err
	}
	// Stops the pulls running in the background (they release their claims) before the
	// store closes.
	defer d.vols.Close()

	bg, stopBG := context.WithCancel(ctx)
	defer stopBG()
	var wg sync.WaitGroup
	n, err := d.startNetwork(bg, &wg, id)
	if err != nil {
		return err
	}
	d.net.Store(n)
	defer n.stop()

	sock := filepath.Join(d.cfg.Root, control.SocketName)
	l, err := sockets.NewUnixSocketWithOpts(sock, sockets.WithChmod(0o600))
	if err != nil {
		return fmt.Errorf("node %q: listen on control socket %s: %w", d.cfg.Name, sock, err)
	}
	srv := control.NewServer(d.vols, d, d.log)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()

	for _, loop := range []func(context.Context){
		func(ctx context.Context) { d.keepLease(ctx, store, lease) },
		func(ctx context.Context) { d.heartbeat(ctx, reg, start) },
		d.vols.WatchRemovals,
		func(ctx context.Context) { d.every(ctx, 30*time.Second, d.vols.Reconcile) },
	} {
		wg.Add(1)
		go func() { defer wg.Done(); loop(bg) }()
	}
	d.log.Info("drayage ready", "root", d.cfg.Root, "mount_dir", d.cfg.MountDir, "store", d.cfg.Store,
		"control", sock, "took", time.Since(start).Round(time.Millisecond))

	select {
	case err = <-errc:
		err = fmt.Errorf("node %q: control API stopped: %w", d.cfg.Name, err)
	case <-ctx.Done():
		err = nil
	}
	stopBG()
	n.stop()
	wg.Wait()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if serr := srv.Shutdown(shutdownCtx); serr != nil && !errors.Is(serr, context.DeadlineExceeded) {
		d.log.Warn("control API shutdown", "err", serr)
	}
	_ = os.Remove(sock)
	// The lease is not revoked: claims of volumes still mounted here must survive a
	// restart of the daemon. They expire with the lease if it does not come back.
	d.log.Info("drayage stopped")
	return err
}

// serveMetrics serves /metrics on the metrics address, from the start of Run (a node
// that can't reach its store can still be scraped) to its end. It returns a function that
// stops serving.
func (d *Daemon) serveMetrics() (func(), error) {
	l, err := net.Listen("tcp", d.cfg.MetricsAddr)
	if err != nil {
		return nil, fmt.Errorf("node %q: metrics: %w (--metrics-addr, DRAYAGE_METRICS_ADDR)", d.cfg.Name, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", d.metrics.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("metrics endpoint stopped", "addr", l.Addr().String(), "err", err)
		}
	}()
	d.log.Info("serving metrics", "url", "http://"+l.Addr().String()+"/metrics")
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}, nil
}

// openStore connects to the cluster store, retrying until it answers or ctx ends. The
// embedded store serves mutual TLS with the node's identity id, if it has one.
func (d *Daemon) openStore(ctx context.Context, id *identity.Identity) (cluster.Store, error) {
	cfg := backends.Config{
		URL: d.cfg.Store, Prefix: d.cfg.StorePrefix, CAFile: d.cfg.StoreCA, CertFile: d.cfg.StoreCert, KeyFile: d.cfg.StoreKey,
		Username: d.cfg.StoreUser, Password: d.cfg.StorePassword, Token: d.cfg.StoreToken,
		Embedded: embedded.Options{
			Dir: filepath.Join(d.cfg.Root, "store"), Name: d.cfg.Name, ClientAddr: d.cfg.EmbeddedAddr, Identity: id,
		},
	}
	backoff := time.Second
	for {
		store, err := backends.Open(ctx, cfg)
		if err == nil {
			return store, nil
		}
		if errors.Is(err, embedded.ErrPlaintext) {
			return nil, fmt.Errorf("node %q: %w", d.cfg.Name, err)
		}
		if addrInUse(err) {
			// Waiting won't free the port; say so at once instead of retrying for ever.
			return nil, fmt.Errorf("node %q: cluster store %s: %w; another process listens on that port or the next (a second drayage, an etcd, DRAYAGE_METRICS_ADDR?): stop it or set DRAYAGE_EMBEDDED_ADDR",
				d.cfg.Name, d.cfg.Store, err)
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("node %q: cluster store %s: %w", d.cfg.Name, d.cfg.Store, err)
		}
		d.log.Error("cannot open the cluster store; retrying. Check that it is up and DRAYAGE_STORE, its credentials (DRAYAGE_STORE_USER/_PASSWORD, DRAYAGE_STORE_TOKEN) and TLS files (DRAYAGE_STORE_CA/_CERT/_KEY)",
			"store", d.cfg.Store, "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("node %q: cluster store %s: %w", d.cfg.Name, d.cfg.Store, err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// addrInUse reports whether err is a listener's "address already in use" (the embedded
// store's ports taken), wrapped or only in words.
func addrInUse(err error) bool {
	return errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use")
}

// keepLease replaces the node's lease whenever it is lost (the store was unreachable for
// longer than the TTL) and has the volume manager claim its mounted volumes again.
func (d *Daemon) keepLease(ctx context.Context, store cluster.Store, lease cluster.Lease) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-lease.Done():
		}
		d.log.Error("lost the node's lease in the cluster store; claims of volumes mounted here lapsed. Taking a new one")
		backoff := time.Second
		for {
			l, err := store.Grant(ctx, d.cfg.LeaseTTL)
			if err == nil {
				lease = l
				break
			}
			d.log.Error("cannot take a new lease; retrying", "err", err, "retry_in", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 30*time.Second)
		}
		d.vols.SetLease(ctx, lease)
		d.log.Info("took a new lease and claimed mounted volumes again")
	}
}

// heartbeat keeps this node's record current.
func (d *Daemon) heartbeat(ctx context.Context, reg *cluster.Registry, started time.Time) {
	put := func(ctx context.Context) {
		n := cluster.Node{Name: d.cfg.Name, Version: d.cfg.Version, Started: started.UTC(), LastSeen: time.Now().UTC()}
		if nw := d.net.Load(); nw != nil {
			n.Addresses = []string{nw.gossip.Addr(), nw.control, nw.data}
		}
		if err := reg.PutNode(ctx, n); err != nil {
			d.log.Warn("cannot update this node's record in the cluster store", "err", err)
		}
	}
	var joining atomic.Bool
	beat := func(ctx context.Context) {
		put(ctx)
		if joining.CompareAndSwap(false, true) {
			go func() { defer joining.Store(false); d.rejoin(ctx, reg) }()
		}
	}
	beat(ctx)
	d.every(ctx, d.cfg.LeaseTTL, beat)
}

// rejoin contacts by gossip the nodes that the store heard from lately but that gossip
// doesn't see alive. Seeds alone don't heal every split: a seed that restarts with only
// itself to join, or two nodes whose seeds are down, find each other again this way.
func (d *Daemon) rejoin(ctx context.Context, reg *cluster.Registry) {
	nw := d.net.Load()
	if nw == nil {
		return
	}
	nodes, err := reg.Nodes(ctx)
	if err != nil {
		return
	}
	var seeds []string
	for _, n := range nodes {
		if n.Name == d.cfg.Name || len(n.Addresses) == 0 || time.Since(n.LastSeen) > 3*d.cfg.LeaseTTL {
			continue
		}
		if m, ok := nw.gossip.Member(n.Name); ok && m.State == gossip.StateAlive {
			continue
		}
		seeds = append(seeds, n.Addresses[0])
	}
	if len(seeds) == 0 {
		return
	}
	if answered, err := nw.gossip.Join(seeds); err != nil || answered == 0 {
		d.log.Debug("nodes in the cluster store did not answer by gossip", "nodes", strings.Join(seeds, ","), "err", err)
		return
	}
	d.log.Info("found nodes through the cluster store and joined them by gossip", "nodes", strings.Join(seeds, ","))
}

// every runs fn every interval until ctx ends.
func (d *Daemon) every(ctx context.Context, interval time.Duration, fn func(context.Context)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn(ctx)
		}
	}
}
