package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/docker/go-connections/sockets"

	"github.com/drayage/drayage/daemon/control"
	"github.com/drayage/drayage/daemon/mount"
	"github.com/drayage/drayage/daemon/volume"
)

// Config is the daemon's settings; cmd/drayage fills it from flags and DRAYAGE_* variables.
type Config struct {
	// Name is this node's name (default: the host name).
	Name string
	// Root is the state dir: volume data, records, control.sock.
	Root string
	// MountDir is where volumes are bind-mounted for the engine (default Root/mounts). A
	// managed plugin sets it to its propagatedMount.
	MountDir string
	// MountTimeout is Mount's budget, kept below the engine's own deadlines.
	MountTimeout time.Duration
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
	return nil
}

// Daemon is one node's agent.
type Daemon struct {
	cfg  Config
	log  *slog.Logger
	vols *volume.Manager
}

// New returns a daemon whose volume manager answers "starting" until Run initialises it.
func New(cfg Config, log *slog.Logger) (*Daemon, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log = log.With("node", cfg.Name)
	vols := volume.NewManager(volume.Config{
		Node:     cfg.Name,
		Root:     cfg.Root,
		MountDir: cfg.MountDir,
		Mounter:  mount.Bind{},
		Logger:   log,
	})
	return &Daemon{cfg: cfg, log: log, vols: vols}, nil
}

// Config returns the validated settings.
func (d *Daemon) Config() Config { return d.cfg }

// Volumes is the node's volume manager.
func (d *Daemon) Volumes() *volume.Manager { return d.vols }

// Run initialises the node and serves the control API until ctx ends.
func (d *Daemon) Run(ctx context.Context) error {
	start := time.Now()
	if err := os.MkdirAll(d.cfg.Root, 0o700); err != nil {
		return fmt.Errorf("node %q: create state dir %s: %w", d.cfg.Name, d.cfg.Root, err)
	}
	if err := d.vols.Init(ctx); err != nil {
		return err
	}
	sock := filepath.Join(d.cfg.Root, control.SocketName)
	l, err := sockets.NewUnixSocketWithOpts(sock, sockets.WithChmod(0o600))
	if err != nil {
		return fmt.Errorf("node %q: listen on control socket %s: %w", d.cfg.Name, sock, err)
	}
	srv := control.NewServer(d.vols, d.log)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	d.log.Info("drayage ready", "root", d.cfg.Root, "mount_dir", d.cfg.MountDir, "control", sock, "took", time.Since(start).Round(time.Millisecond))

	select {
	case err = <-errc:
		return fmt.Errorf("node %q: control API stopped: %w", d.cfg.Name, err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		d.log.Warn("control API shutdown", "err", err)
	}
	_ = os.Remove(sock)
	d.log.Info("drayage stopped")
	return nil
}
