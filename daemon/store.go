package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/cluster/backends"
	"github.com/drayage/drayage/cluster/embedded"
	"github.com/drayage/drayage/cluster/gossip"
	"github.com/drayage/drayage/cluster/identity"
	"github.com/drayage/drayage/daemon/control"
	"github.com/drayage/drayage/daemon/volume"
)

// storeJoinWait is how long a node that was given nodes to join (--join) looks for a
// running store member through gossip before the first of the nodes by name, if none
// runs one, starts the store cluster.
const storeJoinWait = 5 * time.Second

// embeddedOptions configures this node's part in the embedded store. On a network, its
// member listens on the advertised address (not loopback: the other members dial it),
// and it joins the members gossip names.
func (d *Daemon) embeddedOptions(id *identity.Identity, n *network) embedded.Options {
	opts := embedded.Options{
		Dir: filepath.Join(d.cfg.Root, "store"), Name: d.cfg.Name, ClientAddr: d.cfg.EmbeddedAddr, Identity: id,
		Voters: d.cfg.StoreVoters, Logger: d.log,
	}
	if n == nil {
		return opts
	}
	if host, port, err := net.SplitHostPort(d.cfg.EmbeddedAddr); err == nil {
		if ip := net.ParseIP(host); host == "localhost" || ip != nil && (ip.IsLoopback() || ip.IsUnspecified()) {
			opts.ClientAddr = net.JoinHostPort(n.advertise, port)
		}
	}
	opts.Seeds = func() []string { return n.storeMembers(d.cfg.Name) }
	opts.ReplaceAfter, opts.Roster = d.cfg.StoreReplaceAfter, n.roster
	opts.OnMember = func(addr string) {
		if err := n.gossip.SetMeta(func(m *gossip.Meta) { m.Store = addr }, 5*time.Second); err != nil {
			d.log.Warn("cannot tell the other nodes where this node's store member answers; they find it on the next gossip round", "err", err)
		}
		if addr != "" {
			d.log.Info("embedded store member running", "addr", addr)
		}
	}
	started := time.Now()
	opts.Alone = func() bool {
		if len(d.cfg.Join) == 0 {
			return true // the first node: it joins no one
		}
		if time.Since(started) < storeJoinWait {
			return false
		}
		for _, m := range n.gossip.Members() {
			if m.State == gossip.StateAlive && m.Name < d.cfg.Name {
				return false // nodes starting at once: the first by name starts the cluster
			}
		}
		return true
	}
	return opts
}

// roster is gossip's view for the embedded store: the nodes alive, and since when each
// node that is dead has been (a node that left is no member to wait for either).
func (n *network) roster() ([]string, map[string]time.Time) {
	var alive []string
	down := map[string]time.Time{}
	for _, m := range n.gossip.Members() {
		if m.State == gossip.StateAlive {
			alive = append(alive, m.Name)
		} else {
			down[m.Name] = m.Since
		}
	}
	return alive, down
}

// storeMembers are the client addresses of the embedded store members that gossip
// reports alive, other than self's.
func (n *network) storeMembers(self string) []string {
	var out []string
	for _, m := range n.gossip.Members() {
		if m.Name != self && m.State == gossip.StateAlive && m.Meta.Store != "" {
			out = append(out, m.Meta.Store)
		}
	}
	return out
}

// announceStore keeps the node's embedded store, if that is its store, for 'drayage
// store' and the quorum gauge.
func (d *Daemon) announceStore(store cluster.Store) {
	es, ok := store.(*embedded.Store)
	if !ok {
		return
	}
	d.embedded.Store(es)
	d.metrics.SetStoreQuorum(func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return es.Quorum(ctx).OK, es.Role()
	})
}

// openStore connects to the cluster store, retrying until it answers or ctx ends. The
// embedded store serves mutual TLS with the node's identity id, if it has one, and forms
// one cluster with the embedded stores of the nodes gossip finds on network n.
func (d *Daemon) openStore(ctx context.Context, id *identity.Identity, n *network) (cluster.Store, error) {
	cfg := backends.Config{
		URL: d.cfg.Store, Prefix: d.cfg.StorePrefix, CAFile: d.cfg.StoreCA, CertFile: d.cfg.StoreCert, KeyFile: d.cfg.StoreKey,
		Username: d.cfg.StoreUser, Password: d.cfg.StorePassword, Token: d.cfg.StoreToken,
		Embedded: d.embeddedOptions(id, n),
	}
	spec, _ := backends.Parse(d.cfg.Store) // validated with the config
	backoff := time.Second
	for {
		if spec.Kind == backends.KindEmbedded {
			if err := d.roomForStore(); err != nil {
				d.log.Error("the embedded store member waits for room under the state dir; the node answers once it has some", "err", err, "retry_in", diskFullRetry)
				select {
				case <-ctx.Done():
					return nil, fmt.Errorf("node %q: %w", d.cfg.Name, err)
				case <-time.After(diskFullRetry):
				}
				continue
			}
		}
		store, err := backends.Open(ctx, cfg)
		if err == nil {
			d.announceStore(store)
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

// embeddedMinFree is the room the embedded store member needs under the state dir to
// start. etcd ends the process when a write of its WAL or database finds the disk full;
// a daemon that died again at every start would be given up by the engine (a managed
// plugin whose socket does not answer within seconds of its start is disabled, and
// stays so). So a daemon started on a full disk waits for room instead, answering
// "starting" meanwhile; diskFullRetry is how often it looks.
const (
	embeddedMinFree = 64 << 20
	diskFullRetry   = 2 * time.Second
)

// roomForStore fails if the state dir's file system has less than embeddedMinFree free.
func (d *Daemon) roomForStore() error {
	var st unix.Statfs_t
	if err := unix.Statfs(d.cfg.Root, &st); err != nil {
		return nil // the store's own start says what is wrong
	}
	if free := st.Bavail * uint64(st.Bsize); free < embeddedMinFree {
		return fmt.Errorf("the state dir %s has %d MiB free, the embedded store member needs %d MiB: free space there", d.cfg.Root, free>>20, embeddedMinFree>>20)
	}
	return nil
}

// addrInUse reports whether err is a listener's "address already in use" (the embedded
// store's ports taken), wrapped or only in words.
func addrInUse(err error) bool {
	return errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use")
}

// ErrNotEmbedded means the node uses a store other than the embedded one, whose members
// drayage does not manage.
var ErrNotEmbedded = errors.New("not the embedded store")

// embeddedStore is the node's embedded store, or why there is none to manage.
func (d *Daemon) embeddedStore() (*embedded.Store, error) {
	if es := d.embedded.Load(); es != nil {
		return es, nil
	}
	if spec, err := backends.Parse(d.cfg.Store); err == nil && spec.Kind != backends.KindEmbedded {
		return nil, fmt.Errorf("node %q uses the store %s: %w; manage its members with its own tools (etcdctl, consul)", d.cfg.Name, d.cfg.Store, ErrNotEmbedded)
	}
	return nil, fmt.Errorf("node %q: %w: its embedded store is not running yet; try again in a moment", d.cfg.Name, volume.ErrNotReady)
}

// RemoveStoreMember removes a member of the embedded store cluster, for 'drayage store
// remove'.
func (d *Daemon) RemoveStoreMember(ctx context.Context, name string, force bool) (control.StoreMember, error) {
	es, err := d.embeddedStore()
	if err != nil {
		return control.StoreMember{}, err
	}
	m, err := es.RemoveMember(ctx, name, force)
	if err != nil {
		return control.StoreMember{}, fmt.Errorf("node %q: %w", d.cfg.Name, err)
	}
	return control.StoreMember{Member: m}, nil
}

// StoreSnapshot writes a snapshot of the embedded store into the state dir, for 'drayage
// store snapshot', which moves it where the user asked.
func (d *Daemon) StoreSnapshot(ctx context.Context) (control.SnapshotResult, error) {
	es, err := d.embeddedStore()
	if err != nil {
		return control.SnapshotResult{}, err
	}
	f, err := os.CreateTemp(d.cfg.Root, "store-snapshot-*.db")
	if err != nil {
		return control.SnapshotResult{}, fmt.Errorf("node %q: store snapshot: %w", d.cfg.Name, err)
	}
	n, err := es.Snapshot(ctx, f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return control.SnapshotResult{}, fmt.Errorf("node %q: %w", d.cfg.Name, err)
	}
	return control.SnapshotResult{Path: f.Name(), Bytes: n}, nil
}

// StoreMembers lists the members of the embedded store cluster, for 'drayage store ls'.
func (d *Daemon) StoreMembers(ctx context.Context) ([]control.StoreMember, error) {
	es, err := d.embeddedStore()
	if err != nil {
		return nil, err
	}
	ms, err := es.Members(ctx)
	if err != nil {
		return nil, fmt.Errorf("node %q: %w", d.cfg.Name, err)
	}
	out := make([]control.StoreMember, 0, len(ms))
	for _, m := range ms {
		out = append(out, control.StoreMember{Member: m, Self: m.Name == d.cfg.Name})
	}
	return out, nil
}
