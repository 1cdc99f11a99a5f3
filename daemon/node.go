package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/cluster/gossip"
	"github.com/drayage/drayage/cluster/identity"
	"github.com/drayage/drayage/daemon/control"
	"github.com/drayage/drayage/daemon/peers"
	"github.com/drayage/drayage/daemon/transfer"
	"github.com/drayage/drayage/protocol"
)

// network is this node's part in a cluster: identity, gossip and the control server.
// It is nil on a node without certificates (a single node).
type network struct {
	stopped   sync.Once
	id        *identity.Identity
	gossip    *gossip.Gossip
	server    *peers.Server
	advertise string // the advertised IP address
	control   string // advertised control address
	data      string // advertised data address
	sender    *transfer.Server
}

// ports are the listening ports, fixed or picked from a range.
type ports struct{ gossip, control, data int }

// parsePortRange parses "LOW-HIGH".
func parsePortRange(s string) (int, int, error) {
	lo, hi, ok := strings.Cut(s, "-")
	l, err1 := strconv.Atoi(lo)
	h, err2 := strconv.Atoi(hi)
	if !ok || err1 != nil || err2 != nil || l < 1 || h > 65535 || h-l < 2 {
		return 0, 0, fmt.Errorf("port range %q: want LOW-HIGH with room for 3 ports, e.g. 7790-7799", s)
	}
	return l, h, nil
}

// pickPorts returns the configured ports, or the first free ones in the range.
func (c *Config) pickPorts() (ports, error) {
	if c.PortRange == "" {
		return ports{c.GossipPort, c.ControlPort, c.DataPort}, nil
	}
	lo, hi, err := parsePortRange(c.PortRange)
	if err != nil {
		return ports{}, err
	}
	var free []int
	for p := lo; p <= hi && len(free) < 3; p++ {
		if portFree(p, len(free) == 0) {
			free = append(free, p)
		}
	}
	if len(free) < 3 {
		return ports{}, fmt.Errorf("node %q: no 3 free ports in %s (--port-range, DRAYAGE_PORT_RANGE)", c.Name, c.PortRange)
	}
	return ports{free[0], free[1], free[2]}, nil
}

// portFree reports whether p is free for TCP (and UDP too, for gossip).
func portFree(p int, udp bool) bool {
	l, err := net.Listen("tcp", ":"+strconv.Itoa(p))
	if err != nil {
		return false
	}
	l.Close()
	if udp {
		u, err := net.ListenPacket("udp", ":"+strconv.Itoa(p))
		if err != nil {
			return false
		}
		u.Close()
	}
	return true
}

// advertiseAddr is --advertise, or the host's first non-loopback IPv4 address.
func (c *Config) advertiseAddr() (string, error) {
	if c.Advertise != "" {
		if net.ParseIP(c.Advertise) == nil {
			return "", fmt.Errorf("node %q: advertise address %q is not an IP address (--advertise, DRAYAGE_ADVERTISE)", c.Name, c.Advertise)
		}
		return c.Advertise, nil
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", err
	}
	for _, a := range addrs {
		if ip, ok := a.(*net.IPNet); ok && !ip.IP.IsLoopback() && ip.IP.To4() != nil {
			return ip.IP.String(), nil
		}
	}
	return "", fmt.Errorf("node %q: no non-loopback address to advertise; set --advertise or DRAYAGE_ADVERTISE", c.Name)
}

// loadIdentity loads the node's identity from the TLS dir, or returns nil if there is no
// node certificate there (the node runs alone).
func (d *Daemon) loadIdentity() (*identity.Identity, error) {
	cfg := d.cfg
	if !identity.Present(cfg.TLSDir) {
		if len(cfg.Join) > 0 {
			return nil, fmt.Errorf("node %q: --join needs this node's certificate in %s; make one with 'drayage tls init' (DRAYAGE_TLS_DIR)", cfg.Name, cfg.TLSDir)
		}
		d.log.Info("no node certificate in the TLS dir: running as a single node; to form a cluster see 'drayage tls init'", "tls_dir", cfg.TLSDir)
		return nil, nil
	}
	id, err := identity.Load(cfg.TLSDir, cfg.Name)
	if err != nil {
		return nil, err
	}
	if w := id.ExpiryWarning(time.Now()); w != "" {
		d.log.Warn(w)
	}
	return id, nil
}

// startNetwork joins the cluster with the node's identity id (none: the node runs alone).
func (d *Daemon) startNetwork(ctx context.Context, wg *sync.WaitGroup, id *identity.Identity) (*network, error) {
	cfg := d.cfg
	if id == nil {
		return nil, nil
	}
	adv, err := cfg.advertiseAddr()
	if err != nil {
		return nil, err
	}
	p, err := cfg.pickPorts()
	if err != nil {
		return nil, err
	}
	n := &network{
		id:        id,
		advertise: adv,
		control:   net.JoinHostPort(adv, strconv.Itoa(p.control)),
		data:      net.JoinHostPort(adv, strconv.Itoa(p.data)),
	}
	n.gossip, err = gossip.Start(gossip.Config{
		Node: cfg.Name, Port: p.gossip, AdvertiseAddr: adv, Key: id.GossipKey(), Label: cfg.Cluster,
		Meta:    gossip.Meta{Control: n.control, Data: n.data, Version: cfg.Version, Protocol: protocol.Own().String()},
		Profile: cfg.GossipProfile, ProbeInterval: cfg.ProbeInterval, Logger: d.log, OnError: d.metrics.GossipError,
	})
	if err != nil {
		return nil, fmt.Errorf("node %q: %w (--gossip-port, DRAYAGE_GOSSIP_PORT)", cfg.Name, err)
	}
	l, err := net.Listen("tcp", ":"+strconv.Itoa(p.control))
	if err != nil {
		_ = n.gossip.Leave(time.Second)
		return nil, fmt.Errorf("node %q: control port: %w (--control-port, DRAYAGE_CONTROL_PORT)", cfg.Name, err)
	}
	dl, err := net.Listen("tcp", ":"+strconv.Itoa(p.data))
	if err != nil {
		_ = l.Close()
		_ = n.gossip.Leave(time.Second)
		return nil, fmt.Errorf("node %q: data port: %w (--data-port, DRAYAGE_DATA_PORT)", cfg.Name, err)
	}
	n.sender = transfer.NewServer(id, d.sendDir, n.data, d.log)
	n.sender.Cap = transfer.Wire{RateLimit: cfg.RateLimit}
	n.sender.Metrics = d.metrics
	if d.changes != nil {
		n.sender.Changes = d.changes
	}
	n.sender.IdleTimeout, n.sender.MaxTransfers, n.sender.MaxConns = cfg.StreamTimeout, cfg.MaxTransfers, cfg.MaxDataConns
	n.server = peers.NewServer(id, n.gossip.Known, d.log)
	n.server.Register(n.sender.ServiceDesc())
	n.server.Register(d.controlService())
	wg.Add(5)
	go func() { defer wg.Done(); d.announceFreeSpace(ctx, n) }()
	go func() { defer wg.Done(); _ = n.server.Serve(l) }()
	go func() { defer wg.Done(); _ = n.sender.ServeData(dl) }()
	go func() { defer wg.Done(); n.gossip.JoinLoop(ctx, cfg.Join) }()
	go func() { defer wg.Done(); id.Watch(ctx, 10*time.Second, d.log) }()
	d.vols.SetPuller(netPuller{n: n, log: d.log, metrics: d.metrics, idle: cfg.StreamTimeout, slots: make(chan struct{}, cfg.MaxTransfers)})
	d.metrics.SetMembers(func() map[string]int {
		counts := map[string]int{}
		for _, m := range n.gossip.Members() {
			counts[m.State]++
		}
		return counts
	}, n.gossip.HealthScore)
	d.log.Info("joined the network", "gossip", n.gossip.Addr(), "control", n.control, "data", n.data,
		"cluster", cfg.Cluster, "certificate_expires", id.Certificate().NotAfter.Format(time.DateOnly))
	return n, nil
}

// sendDir is the transfer engine's Authorizer: volume.Manager.SendDir, its refusal of a
// claim that is not the volume's current one marked as such for the engine.
func (d *Daemon) sendDir(ctx context.Context, name, node string, epoch uint64) (string, error) {
	dir, err := d.vols.SendDir(ctx, name, node, epoch)
	return dir, markStaleClaim(err)
}

// markStaleClaim marks err as transfer.ErrStaleClaim if the cluster store says the claim
// is stale or lost. Its text stays as it is: the receiver sees it.
func markStaleClaim(err error) error {
	if errors.Is(err, cluster.ErrStaleEpoch) || errors.Is(err, cluster.ErrClaimLost) {
		return staleClaim{err}
	}
	return err
}

// staleClaim is a refusal of a claim that is not the volume's current one, as the cluster
// store's error says.
type staleClaim struct{ error }

func (e staleClaim) Unwrap() []error { return []error{e.error, transfer.ErrStaleClaim} }

// stop leaves the cluster and stops serving other nodes; it returns once the transfers
// this node sends have ended.
func (n *network) stop() {
	if n == nil {
		return
	}
	n.stopped.Do(func() {
		_ = n.gossip.Leave(2 * time.Second)
		// The sender first: its transfers end, and the calls still running on the control
		// server return at once.
		_ = n.sender.Close()
		n.server.Stop()
	})
}

// ReloadTLS reads the node certificate again (on SIGHUP).
func (d *Daemon) ReloadTLS() error {
	n := d.net.Load()
	if n == nil {
		return errors.New("no node certificate loaded: this node runs alone")
	}
	if err := n.id.Reload(); err != nil {
		return err
	}
	d.log.Info("reloaded node certificate", "serial", n.id.Certificate().SerialNumber.Text(16), "expires", n.id.Certificate().NotAfter)
	return nil
}

// Nodes describes the cluster's nodes for 'drayage node ls': the gossip roster, with the
// store's node records for nodes gossip has not seen, and, with o.Reach, whether each
// live node's control port answers over mutual TLS.
func (d *Daemon) Nodes(ctx context.Context, o control.NodesOptions) ([]control.NodeInfo, error) {
	byName := d.roster(ctx)
	if n := d.net.Load(); n != nil && o.Reach {
		var wg sync.WaitGroup
		for _, info := range byName {
			if info.Self || info.State != gossip.StateAlive || info.Control == "" {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				defer cancel()
				if err := peers.Check(cctx, n.id, info.Name, info.Control); err != nil {
					info.Reach = err.Error()
				} else {
					info.Reach = "ok"
				}
			}()
		}
		wg.Wait()
	}
	return sortedNodes(byName), nil
}

// roster is the gossip roster, with the store's node records for nodes gossip has not
// seen (or, on a node running alone, the records only), by name.
func (d *Daemon) roster(ctx context.Context) map[string]*control.NodeInfo {
	byName := map[string]*control.NodeInfo{}
	if d.reg != nil {
		recs, err := d.reg.Nodes(ctx)
		if err != nil {
			d.log.Warn("cannot read node records from the cluster store", "err", err)
		}
		for _, r := range recs {
			byName[r.Name] = &control.NodeInfo{Name: r.Name, State: "unknown", Version: r.Version, LastSeen: r.LastSeen}
		}
	}
	n := d.net.Load()
	if n == nil {
		if info, ok := byName[d.cfg.Name]; ok {
			info.State, info.Self, info.LastSeen = gossip.StateAlive, true, time.Now().UTC()
		}
	} else {
		for _, m := range n.gossip.Members() {
			info := &control.NodeInfo{Name: m.Name, Address: m.Addr, Control: m.Meta.Control, Data: m.Meta.Data,
				State: m.State, Version: m.Meta.Version, Protocol: protocolOf(m.Meta), LastSeen: m.LastSeen.UTC(), Self: m.Name == d.cfg.Name}
			byName[m.Name] = info
		}
	}
	return byName
}

// sortedNodes lists the nodes by name.
func sortedNodes(byName map[string]*control.NodeInfo) []control.NodeInfo {
	out := make([]control.NodeInfo, 0, len(byName))
	for _, info := range byName {
		out = append(out, *info)
	}
	slices.SortFunc(out, func(a, b control.NodeInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// protocolOf is the protocol range a member says it speaks ("1" for one that says none).
func protocolOf(m gossip.Meta) string {
	r, err := protocol.Parse(m.Protocol)
	if err != nil {
		return m.Protocol
	}
	return r.String()
}
