// Package plugin adapts the Docker volume plugin protocol (VolumeDriver.*) onto the
// daemon's volume manager. It holds no logic of its own: it bounds each call with a
// deadline shorter than the engine's, turns requests into manager calls and errors into
// the protocol's {"Err": "..."}.
package plugin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/docker/go-connections/sockets"
	dockervolume "github.com/docker/go-plugins-helpers/volume"

	"github.com/drayage/drayage/daemon/volume"
)

// Volumes is what the plugin needs from the daemon; *volume.Manager implements it.
type Volumes interface {
	Node() string
	Create(ctx context.Context, name string, opts map[string]string) error
	Remove(ctx context.Context, name string) error
	Mount(ctx context.Context, name, id string) (string, error)
	Unmount(ctx context.Context, name, id string) error
	Path(ctx context.Context, name string) (string, error)
	Get(ctx context.Context, name string) (volume.Info, error)
	ListNames(ctx context.Context) ([]volume.Info, error)
}

var _ Volumes = (*volume.Manager)(nil)

// Options configures a Driver.
type Options struct {
	// MountTimeout bounds Mount and Create; it must stay below the engine's 2 minute
	// deadline (and a managed plugin's 30 s HTTP timeout) so our error, not the engine's
	// timeout, is what the user sees.
	MountTimeout time.Duration
	// CallTimeout bounds every other call; the engine allows them 1 minute.
	CallTimeout time.Duration
	// Logger receives the driver's logs, already labelled with the node.
	Logger *slog.Logger
}

// Driver implements the Docker volume plugin protocol.
type Driver struct {
	vols Volumes
	opts Options
	log  *slog.Logger
}

var _ dockervolume.Driver = (*Driver)(nil)

// NewDriver returns a Driver over vols.
func NewDriver(vols Volumes, opts Options) *Driver {
	if opts.MountTimeout <= 0 {
		opts.MountTimeout = 25 * time.Second
	}
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = 25 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Driver{vols: vols, opts: opts, log: log}
}

// call runs one request under its deadline and logs a failure.
func (d *Driver) call(op, name string, timeout time.Duration, fn func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	err := fn(ctx)
	if err != nil {
		level := slog.LevelWarn
		if op == "get" && errors.Is(err, volume.ErrNotFound) {
			level = slog.LevelDebug // the engine asks before every create
		}
		d.log.Log(ctx, level, "plugin call failed", "op", op, "volume", name, "err", err, "took", time.Since(start))
		return err
	}
	d.log.Debug("plugin call", "op", op, "volume", name, "took", time.Since(start))
	return nil
}

// Create implements VolumeDriver.Create.
func (d *Driver) Create(r *dockervolume.CreateRequest) error {
	return d.call("create", r.Name, d.opts.MountTimeout, func(ctx context.Context) error {
		return d.vols.Create(ctx, r.Name, r.Options)
	})
}

// Remove implements VolumeDriver.Remove.
func (d *Driver) Remove(r *dockervolume.RemoveRequest) error {
	return d.call("remove", r.Name, d.opts.CallTimeout, func(ctx context.Context) error {
		return d.vols.Remove(ctx, r.Name)
	})
}

// Mount implements VolumeDriver.Mount.
func (d *Driver) Mount(r *dockervolume.MountRequest) (*dockervolume.MountResponse, error) {
	var mp string
	err := d.call("mount", r.Name, d.opts.MountTimeout, func(ctx context.Context) (err error) {
		mp, err = d.vols.Mount(ctx, r.Name, r.ID)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &dockervolume.MountResponse{Mountpoint: mp}, nil
}

// Unmount implements VolumeDriver.Unmount.
func (d *Driver) Unmount(r *dockervolume.UnmountRequest) error {
	return d.call("unmount", r.Name, d.opts.CallTimeout, func(ctx context.Context) error {
		return d.vols.Unmount(ctx, r.Name, r.ID)
	})
}

// Path implements VolumeDriver.Path.
func (d *Driver) Path(r *dockervolume.PathRequest) (*dockervolume.PathResponse, error) {
	var mp string
	err := d.call("path", r.Name, d.opts.CallTimeout, func(ctx context.Context) (err error) {
		mp, err = d.vols.Path(ctx, r.Name)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &dockervolume.PathResponse{Mountpoint: mp}, nil
}

// Get implements VolumeDriver.Get. The engine forgets a volume when Get fails, so the
// manager fails it only for a volume that does not exist.
func (d *Driver) Get(r *dockervolume.GetRequest) (*dockervolume.GetResponse, error) {
	var info volume.Info
	err := d.call("get", r.Name, d.opts.CallTimeout, func(ctx context.Context) (err error) {
		info, err = d.vols.Get(ctx, r.Name)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &dockervolume.GetResponse{Volume: toDocker(info)}, nil
}

// List implements VolumeDriver.List. The engine takes only each volume's name and
// mountpoint from it (it asks Get for the status), so that is all it is sent.
func (d *Driver) List() (*dockervolume.ListResponse, error) {
	var infos []volume.Info
	err := d.call("list", "", d.opts.CallTimeout, func(ctx context.Context) (err error) {
		infos, err = d.vols.ListNames(ctx)
		return err
	})
	if err != nil {
		return nil, err
	}
	resp := &dockervolume.ListResponse{Volumes: make([]*dockervolume.Volume, 0, len(infos))}
	for _, info := range infos {
		resp.Volumes = append(resp.Volumes, &dockervolume.Volume{Name: info.Name, Mountpoint: info.Mountpoint})
	}
	return resp, nil
}

// Capabilities implements VolumeDriver.Capabilities: a drayage volume is one
// cluster-wide object.
func (d *Driver) Capabilities() *dockervolume.CapabilitiesResponse {
	return &dockervolume.CapabilitiesResponse{Capabilities: dockervolume.Capability{Scope: "global"}}
}

// toDocker renders a volume for the engine; Status is what docker volume inspect shows.
func toDocker(info volume.Info) *dockervolume.Volume {
	status := map[string]any{
		"node":   info.Node,
		"state":  info.State,
		"mounts": info.Mounts,
	}
	if info.Size >= 0 {
		status["size"] = info.Size
	}
	if info.Problem != "" {
		status["problem"] = info.Problem
	}
	if info.Progress != nil {
		status["progress"] = info.Progress.String()
	}
	if info.Copies > 1 || len(info.Replicas) > 0 {
		status["copies"] = info.Copies
		replicas := make([]map[string]any, 0, len(info.Replicas))
		for _, r := range info.Replicas {
			rp := map[string]any{"node": r.Node, "state": r.State, "synced": r.Synced.Format(time.RFC3339),
				"lag_seconds": r.Lag, "lag_bytes": r.LagBytes, "root": r.Root}
			if r.Problem != "" {
				rp["problem"] = r.Problem
			}
			replicas = append(replicas, rp)
		}
		status["replicas"] = replicas
	}
	v := &dockervolume.Volume{Name: info.Name, Mountpoint: info.Mountpoint, Status: status}
	if !info.Created.IsZero() {
		v.CreatedAt = info.Created.Format(time.RFC3339)
	}
	return v
}

// Listen opens the plugin's unix socket, replacing a stale one, readable and writable
// by root only. Open it before any slow initialisation: the engine gives a managed
// plugin about 10 seconds to answer.
func Listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create plugin socket dir: %w", err)
	}
	l, err := sockets.NewUnixSocketWithOpts(path, sockets.WithChmod(0o660))
	if err != nil {
		return nil, fmt.Errorf("listen on plugin socket %s: %w", path, err)
	}
	return l, nil
}

// Serve answers plugin requests on l until l is closed.
func Serve(l net.Listener, d *Driver) error {
	return dockervolume.NewHandler(d).Serve(l)
}
