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
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/docker/go-connections/sockets"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/cluster/embedded"
	"github.com/drayage/drayage/cluster/gossip"
	"github.com/drayage/drayage/daemon/changes"
	"github.com/drayage/drayage/daemon/control"
	"github.com/drayage/drayage/daemon/metrics"
	"github.com/drayage/drayage/daemon/mount"
	"github.com/drayage/drayage/daemon/transfer"
	"github.com/drayage/drayage/daemon/volume"
	"github.com/drayage/drayage/protocol"
)

// Daemon is one node's agent.
type Daemon struct {
	cfg  Config
	log  *slog.Logger
	vols *volume.Manager
	reg  *cluster.Registry
	net  atomic.Pointer[network]
	// changes tells which paths of the volumes changed (nil where the kernel does not
	// allow it); set before the network starts.
	changes *changes.Tracker
	// embedded is this node's part in the embedded store, if that is the store.
	embedded atomic.Pointer[embedded.Store]
	metrics  *metrics.Metrics
	// started is when the daemon was made, for its uptime.
	started time.Time
	// seeds fills volumes from their sources; its S3 client also takes backups.
	seeds *seeder
	// backups are the backups running here, by volume (backups.go).
	backups backupsRunning
}

// New returns a daemon whose volume manager answers "starting" until Run initialises it.
func New(cfg Config, log *slog.Logger) (*Daemon, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log = log.With("node", cfg.Name)
	m := metrics.New(metrics.Options{Node: cfg.Name, Version: cfg.Version})
	seeds, err := newSeeder(cfg, log)
	if err != nil {
		return nil, err
	}
	vols := volume.NewManager(volume.Config{
		Node:     cfg.Name,
		Root:     cfg.Root,
		MountDir: cfg.MountDir,
		Mounter:  mount.Bind{},
		// A managed plugin's mount dir is its propagated mount.
		MountPropagated: cfg.MountPropagated,
		Logger:          log,
		Metrics:         m,

		DynamicLimit:        cfg.DynamicLimit,
		KeepReplica:         cfg.KeepReplica,
		StagingGrace:        cfg.StagingGrace,
		Replicas:            cfg.Replicas,
		SyncInterval:        cfg.SyncInterval,
		ReplicaReplaceAfter: cfg.ReplicaReplaceAfter,
		MaxLag:              cfg.MaxLag,
		TreeRoot:            transfer.TreeRoot,
		Seeder:              seeds,
	})
	m.SetVolumeStates(vols.LocalStates)
	m.SetReplicaLags(vols.ReplicaLags)
	return &Daemon{cfg: cfg, log: log, vols: vols, metrics: m, started: time.Now(), seeds: seeds}, nil
}

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
	if d.changes = d.trackChanges(); d.changes != nil {
		defer d.changes.Close()
	}
	// The network first: the embedded store finds its members through gossip.
	bg, stopBG := context.WithCancel(ctx)
	var wg sync.WaitGroup
	n, err := d.startNetwork(bg, &wg, id)
	if err != nil {
		stopBG()
		return err
	}
	d.net.Store(n)
	defer func() { stopBG(); n.stop(); wg.Wait() }()
	store, err := d.openStore(ctx, id, n)
	if err != nil {
		return err
	}
	defer store.Close()
	store = d.metrics.Store(store)
	reg := cluster.NewRegistry(store, d.cfg.StorePrefix)
	d.reg = reg
	if _, err := reg.StartSchema(ctx, d.cfg.Name, protocol.Own()); err != nil {
		return err
	}
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
	schemac := make(chan error, 1)
	wg.Add(1)
	go func() { defer wg.Done(); schemac <- d.keepSchema(bg, reg, store) }()
	d.log.Info("drayage ready", "root", d.cfg.Root, "mount_dir", d.cfg.MountDir, "store", d.cfg.Store,
		"control", sock, "took", time.Since(start).Round(time.Millisecond))

	select {
	case err = <-errc:
		err = fmt.Errorf("node %q: control API stopped: %w", d.cfg.Name, err)
	case err = <-schemac: // records this node does not speak; nil once ctx has ended
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
		n := cluster.Node{Name: d.cfg.Name, Version: d.cfg.Version, Protocol: protocol.Own().String(), Started: started.UTC(), LastSeen: time.Now().UTC()}
		if nw := d.net.Load(); nw != nil {
			n.Addresses = []string{nw.gossip.Addr(), nw.control, nw.data}
		}
		if err := reg.PutNode(ctx, n); err != nil {
			d.log.Warn("cannot update this node's record in the cluster store", "err", err)
		}
	}
	// One rejoin at a time runs beside the beats; heartbeat returns once it has ended.
	var joining atomic.Bool
	var rejoins sync.WaitGroup
	defer rejoins.Wait()
	beat := func(ctx context.Context) {
		put(ctx)
		if joining.CompareAndSwap(false, true) {
			rejoins.Add(1)
			go func() {
				defer rejoins.Done()
				defer joining.Store(false)
				d.rejoin(ctx, reg)
			}()
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
