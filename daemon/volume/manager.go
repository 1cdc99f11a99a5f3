package volume

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/drayage/drayage/daemon/internal/keylock"
	"github.com/drayage/drayage/daemon/localstore"
	"github.com/drayage/drayage/daemon/mount"
)

// States of a volume.
const (
	StateIdle    = "idle"
	StateMounted = "mounted"
	// StateUnreadable: the volume exists but its record can't be read (see Problem).
	StateUnreadable = "unreadable"
)

// Info is a volume as users see it (docker volume inspect, drayage volume inspect).
type Info struct {
	Name       string            `json:"name"`
	Node       string            `json:"node"`
	State      string            `json:"state"`
	Mountpoint string            `json:"mountpoint,omitempty"`
	Mounts     int               `json:"mounts"`
	Size       int64             `json:"size"` // bytes; -1 where not measured (List)
	Options    map[string]string `json:"options,omitempty"`
	Created    time.Time         `json:"created"`
	// Problem says what is wrong with a volume in a bad state, and what to do.
	Problem string `json:"problem,omitempty"`
}

// Config configures a Manager.
type Config struct {
	// Node is this node's name, used in errors and volume info.
	Node string
	// Root is the state dir that holds volume data and records.
	Root string
	// MountDir is where volumes are bind-mounted for the engine.
	MountDir string
	// Mounter makes the bind mounts; mount.Bind{} in production.
	Mounter mount.Mounter
	// Logger receives the manager's logs, already labelled with the node; slog.Default()
	// if nil.
	Logger *slog.Logger
}

// Manager runs the volume operations of one node. It is safe for concurrent use;
// operations on one volume are serialised.
type Manager struct {
	cfg     Config
	log     *slog.Logger
	store   atomic.Pointer[localstore.Store] // nil until Init
	readyCh chan struct{}                    // closed when Init completes
	locks   keylock.Locks
}

// NewManager returns a Manager that answers ErrNotReady until Init completes.
func NewManager(cfg Config) *Manager {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Manager{cfg: cfg, log: log, readyCh: make(chan struct{})}
}

// Node is the name of the node this manager runs on.
func (m *Manager) Node() string { return m.cfg.Node }

// Init opens the state dir and restores the bind mounts of volumes that were mounted when
// the daemon last stopped. Volumes whose mount can't be restored are logged, not fatal.
func (m *Manager) Init(ctx context.Context) error {
	if err := os.MkdirAll(m.cfg.MountDir, 0o755); err != nil {
		return fmt.Errorf("node %q: create mount dir %s: %w", m.cfg.Node, m.cfg.MountDir, err)
	}
	store, err := localstore.Open(m.cfg.Root)
	if err != nil {
		return fmt.Errorf("node %q: open state dir %s: %w; check that it exists and is writable", m.cfg.Node, m.cfg.Root, err)
	}
	recs, err := store.List()
	if err != nil {
		return fmt.Errorf("node %q: %w", m.cfg.Node, err)
	}
	inUse := make(map[string]bool)
	for _, rec := range recs {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if rec.MountCount() == 0 {
			continue
		}
		inUse[rec.Name] = true
		if err := m.bind(store, rec.Name); err != nil {
			m.log.Error("cannot restore mount; containers using it keep their data, new ones can't mount it until it is remounted",
				"volume", rec.Name, "err", err)
			continue
		}
		m.log.Info("restored mount", "volume", rec.Name, "mounts", rec.MountCount())
	}
	m.sweepMountDir(inUse)
	m.store.Store(store)
	close(m.readyCh)
	return nil
}

// sweepMountDir removes mountpoints left from volumes that are no longer mounted.
func (m *Manager) sweepMountDir(inUse map[string]bool) {
	entries, err := os.ReadDir(m.cfg.MountDir)
	if err != nil {
		m.log.Warn("cannot read mount dir", "dir", m.cfg.MountDir, "err", err)
		return
	}
	for _, e := range entries {
		if inUse[e.Name()] {
			continue
		}
		if err := m.unbind(e.Name()); err != nil {
			m.log.Warn("cannot remove stale mountpoint", "volume", e.Name(), "err", err)
		}
	}
}

// ready waits for Init to complete, as long as ctx allows. Calls wait rather than fail at
// once: the engine forgets a volume whose Get fails, so a daemon that is starting must
// not answer Get with an error it can avoid.
func (m *Manager) ready(ctx context.Context) (*localstore.Store, error) {
	select {
	case <-m.readyCh:
		return m.store.Load(), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("node %q: %w; retry in a few seconds", m.cfg.Node, ErrNotReady)
	}
}

// begin checks the name, waits for readiness, then locks the volume for one operation.
func (m *Manager) begin(ctx context.Context, name string) (*localstore.Store, func(), error) {
	if err := ValidateName(name); err != nil {
		return nil, nil, fmt.Errorf("node %q: %w", m.cfg.Node, err)
	}
	store, err := m.ready(ctx)
	if err != nil {
		return nil, nil, err
	}
	return store, m.locks.Lock(name), nil
}

func (m *Manager) notFound(name string) error {
	return fmt.Errorf("volume %q on node %q: %w; create it with 'docker volume create --driver drayage %s'",
		name, m.cfg.Node, ErrNotFound, name)
}

func (m *Manager) load(store *localstore.Store, name string) (localstore.Record, error) {
	rec, err := store.Load(name)
	if errors.Is(err, localstore.ErrNotExist) {
		return rec, m.notFound(name)
	}
	if err != nil {
		return rec, fmt.Errorf("node %q: %w", m.cfg.Node, err)
	}
	return rec, nil
}

// Create makes a volume. Creating a volume that exists with the same options succeeds;
// with other options it fails with ErrOptionsConflict.
func (m *Manager) Create(ctx context.Context, name string, raw map[string]string) error {
	store, unlock, err := m.begin(ctx, name)
	if err != nil {
		return err
	}
	defer unlock()
	opts, canon, err := ParseOptions(raw)
	if err != nil {
		return fmt.Errorf("volume %q on node %q: %w", name, m.cfg.Node, err)
	}
	rec, err := store.Load(name)
	switch {
	case err == nil:
		return m.checkSameOptions(rec, opts, canon)
	case !errors.Is(err, localstore.ErrNotExist):
		return fmt.Errorf("node %q: %w", m.cfg.Node, err)
	}
	rec = localstore.Record{Name: name, Options: canon, Created: time.Now().UTC()}
	err = store.Create(rec, opts.UID, opts.GID, opts.Mode)
	if errors.Is(err, localstore.ErrExist) {
		return m.checkSameOptions(rec, opts, canon)
	}
	if err != nil {
		return fmt.Errorf("node %q: %w", m.cfg.Node, err)
	}
	m.log.Info("created volume", "volume", name, "options", formatOptions(canon))
	return nil
}

func (m *Manager) checkSameOptions(existing localstore.Record, want Options, wantCanon map[string]string) error {
	have, _, err := ParseOptions(existing.Options)
	if err != nil {
		return fmt.Errorf("volume %q on node %q has unreadable options: %w", existing.Name, m.cfg.Node, err)
	}
	if have != want {
		return fmt.Errorf("volume %q on node %q: %w: it has %s, this request has %s; create it with the same options, or remove it first",
			existing.Name, m.cfg.Node, ErrOptionsConflict, formatOptions(existing.Options), formatOptions(wantCanon))
	}
	return nil
}

// Remove deletes a volume and its data. It fails with ErrInUse while containers mount it.
// Removing a volume that does not exist succeeds: there is nothing left to remove.
func (m *Manager) Remove(ctx context.Context, name string) error {
	store, unlock, err := m.begin(ctx, name)
	if err != nil {
		return err
	}
	defer unlock()
	rec, err := store.Load(name)
	if errors.Is(err, localstore.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("node %q: %w", m.cfg.Node, err)
	}
	if n := rec.MountCount(); n > 0 {
		return fmt.Errorf("volume %q is mounted by %s on node %q: %w; stop and remove the containers using it, then remove the volume",
			name, containers(n), m.cfg.Node, ErrInUse)
	}
	if err := store.Delete(name); err != nil && !errors.Is(err, localstore.ErrNotExist) {
		return fmt.Errorf("node %q: %w", m.cfg.Node, err)
	}
	m.log.Info("removed volume", "volume", name)
	return nil
}

func containers(n int) string {
	if n == 1 {
		return "1 container"
	}
	return fmt.Sprintf("%d containers", n)
}

// Mount takes one reference on the volume for the given mount ID and returns the
// mountpoint. The first reference makes the bind mount. A failed Mount changes nothing.
func (m *Manager) Mount(ctx context.Context, name, id string) (string, error) {
	store, unlock, err := m.begin(ctx, name)
	if err != nil {
		return "", err
	}
	defer unlock()
	rec, err := m.load(store, name)
	if err != nil {
		return "", err
	}
	first := rec.MountCount() == 0
	if first {
		if err := m.bind(store, name); err != nil {
			return "", fmt.Errorf("volume %q on node %q: %w; check the daemon log and that drayage has CAP_SYS_ADMIN", name, m.cfg.Node, err)
		}
	}
	next := rec.Clone()
	if next.Mounts == nil {
		next.Mounts = make(map[string]int)
	}
	next.Mounts[id]++
	if err := store.Save(next); err != nil {
		if first {
			_ = m.unbind(name)
		}
		return "", fmt.Errorf("node %q: %w", m.cfg.Node, err)
	}
	m.log.Info("mounted volume", "volume", name, "id", id, "mounts", next.MountCount())
	return m.mountpoint(name), nil
}

// Unmount drops one reference of the given mount ID; the last reference removes the bind
// mount. Unmounting an ID or a volume that is not mounted does nothing.
func (m *Manager) Unmount(ctx context.Context, name, id string) error {
	store, unlock, err := m.begin(ctx, name)
	if err != nil {
		return err
	}
	defer unlock()
	rec, err := store.Load(name)
	if errors.Is(err, localstore.ErrNotExist) {
		m.log.Debug("unmount of unknown volume ignored", "volume", name, "id", id)
		return nil
	}
	if err != nil {
		return fmt.Errorf("node %q: %w", m.cfg.Node, err)
	}
	if rec.Mounts[id] == 0 {
		m.log.Debug("unmount of unknown mount ID ignored", "volume", name, "id", id)
		return nil
	}
	next := rec.Clone()
	next.Mounts[id]--
	if next.Mounts[id] == 0 {
		delete(next.Mounts, id)
	}
	if next.MountCount() == 0 {
		if err := m.unbind(name); err != nil {
			return fmt.Errorf("volume %q on node %q: %w; the volume stays mounted, check what holds %s busy", name, m.cfg.Node, err, m.mountpoint(name))
		}
	}
	if err := store.Save(next); err != nil {
		return fmt.Errorf("node %q: %w", m.cfg.Node, err)
	}
	m.log.Info("unmounted volume", "volume", name, "id", id, "mounts", next.MountCount())
	return nil
}

// Path returns the mountpoint of a mounted volume, or "" if it is not mounted.
func (m *Manager) Path(ctx context.Context, name string) (string, error) {
	store, unlock, err := m.begin(ctx, name)
	if err != nil {
		return "", err
	}
	defer unlock()
	rec, err := m.load(store, name)
	if err != nil {
		return "", err
	}
	return m.info(rec).Mountpoint, nil
}

// Get describes one volume, with its size measured. It fails only for a volume that does
// not exist (the engine forgets a volume whose Get fails): a volume whose record can't be
// read is described with the problem instead.
func (m *Manager) Get(ctx context.Context, name string) (Info, error) {
	store, unlock, err := m.begin(ctx, name)
	if err != nil {
		return Info{}, err
	}
	defer unlock()
	rec, err := store.Load(name)
	switch {
	case errors.Is(err, localstore.ErrNotExist):
		return Info{}, m.notFound(name)
	case err != nil:
		m.log.Error("cannot read volume record", "volume", name, "err", err)
		return Info{Name: name, Node: m.cfg.Node, State: StateUnreadable, Size: -1,
			Problem: err.Error() + "; check the state dir and the daemon log"}, nil
	}
	info := m.info(rec)
	if info.Size, err = store.Size(name); err != nil {
		m.log.Warn("cannot measure volume", "volume", name, "err", err)
		info.Size = -1
	}
	return info, nil
}

// List describes every volume held on this node, sorted by name; sizes are not measured.
func (m *Manager) List(ctx context.Context) ([]Info, error) {
	store, err := m.ready(ctx)
	if err != nil {
		return nil, err
	}
	recs, err := store.List()
	if err != nil {
		return nil, fmt.Errorf("node %q: %w", m.cfg.Node, err)
	}
	infos := make([]Info, 0, len(recs))
	for _, rec := range recs {
		infos = append(infos, m.info(rec))
	}
	return infos, nil
}

func (m *Manager) info(rec localstore.Record) Info {
	info := Info{
		Name:    rec.Name,
		Node:    m.cfg.Node,
		State:   StateIdle,
		Mounts:  rec.MountCount(),
		Size:    -1,
		Options: rec.Options,
		Created: rec.Created,
	}
	if info.Mounts > 0 {
		info.State = StateMounted
		info.Mountpoint = m.mountpoint(rec.Name)
	}
	return info
}

func (m *Manager) mountpoint(name string) string { return filepath.Join(m.cfg.MountDir, name) }

// bind makes the volume's mountpoint show its data, if it does not already.
func (m *Manager) bind(store *localstore.Store, name string) error {
	mp := m.mountpoint(name)
	if err := os.MkdirAll(mp, 0o755); err != nil {
		return fmt.Errorf("create mountpoint: %w", err)
	}
	mounted, err := m.cfg.Mounter.Mounted(mp)
	if err != nil {
		return err
	}
	if mounted {
		return nil
	}
	if err := m.cfg.Mounter.Bind(store.DataDir(name), mp); err != nil {
		_ = os.Remove(mp)
		return err
	}
	return nil
}

// unbind removes the volume's bind mount and mountpoint.
func (m *Manager) unbind(name string) error {
	mp := m.mountpoint(name)
	mounted, err := m.cfg.Mounter.Mounted(mp)
	if err != nil {
		return err
	}
	if mounted {
		if err := m.cfg.Mounter.Unbind(mp); err != nil {
			return err
		}
	}
	if err := os.Remove(mp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove mountpoint: %w", err)
	}
	return nil
}
