// Package gossip is cluster membership over hashicorp/memberlist: which nodes are up, and
// where their control and data ports are. Gossip is encrypted and authenticated with the
// cluster's key (AES-GCM; a node without it is not admitted) and carries a cluster label,
// so two clusters on one network never merge.
//
// The roster remembers every node it has seen, with its state (alive, dead, left) and
// when it was last seen alive, so a dead node can be named in errors.
package gossip

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	stdlog "log"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// DefaultPort is the gossip port.
const DefaultPort = 7790

// States of a member.
const (
	StateAlive = "alive"
	StateDead  = "dead"
	StateLeft  = "left"
)

// Meta is what a node tells the others about itself.
type Meta struct {
	// Control and Data are the host:port of the node's control and data listeners.
	Control string `json:"c,omitempty"`
	Data    string `json:"d,omitempty"`
	Version string `json:"v,omitempty"`
	// Protocol is the protocol range the node speaks (package protocol), "1" if empty.
	Protocol string `json:"p,omitempty"`
	// Store is the client address of the node's embedded store member, while it runs
	// one (DRAYAGE_STORE=embedded): where a joining node finds the store cluster.
	Store string `json:"s,omitempty"`
	// Free is the free space, in bytes, of the node's state dir, as it last measured
	// it: where new replicas go.
	Free int64 `json:"f,omitempty"`
	// Leaving is set just before a node leaves, so the others can tell a departure from
	// a death.
	Leaving bool `json:"l,omitempty"`
}

// Member is a node in the roster.
type Member struct {
	Name string `json:"name"`
	// Addr is the node's gossip address, host:port.
	Addr  string `json:"addr"`
	State string `json:"state"`
	Meta  Meta   `json:"meta"`
	// LastSeen is when the node was last known alive (now, for live nodes).
	LastSeen time.Time `json:"last_seen"`
	// Since is when the node entered its current state.
	Since time.Time `json:"since"`
}

// Config configures gossip.
type Config struct {
	Node string
	// BindAddr and Port are where gossip listens (default 0.0.0.0 and DefaultPort).
	BindAddr string
	Port     int
	// AdvertiseAddr is the address others reach this node at (default: chosen by
	// memberlist from the bind address).
	AdvertiseAddr string
	// Key is the cluster's gossip key (16, 24 or 32 bytes). Required.
	Key []byte
	// Label names the cluster; nodes with another label are not admitted.
	Label string
	Meta  Meta
	// ProbeInterval is how often a random member is probed (default 1s); a dead node is
	// declared within a few intervals.
	ProbeInterval time.Duration
	// Profile names the timings (ProfileLAN, the default).
	Profile string
	// Transport carries gossip instead of UDP and TCP sockets: a simulated network
	// (make scale runs a thousand nodes in one process on memberlist's MockNetwork).
	Transport memberlist.NodeAwareTransport
	Logger    *slog.Logger
	// OnChange, if set, is called with a member whenever its state changes. It runs on
	// memberlist's event goroutine and must not block.
	OnChange func(Member)
	// OnError, if set, is called for every error memberlist reports (a failed probe or
	// push/pull sync, a packet it could not decode or authenticate). It runs on
	// memberlist's goroutines and must not block: count, don't act.
	OnError func()
}

// Gossip is this node's membership in the cluster.
type Gossip struct {
	cfg    Config
	ml     *memberlist.Memberlist
	addr   string // advertised, read once at Start: memberlist's own node changes under it
	log    *slog.Logger
	mu     sync.Mutex
	meta   Meta
	roster map[string]*Member
}

// Start begins gossiping. Join the cluster with Join or JoinLoop.
func Start(cfg Config) (*Gossip, error) {
	if len(cfg.Key) == 0 {
		return nil, errors.New("gossip: no key; every node needs the cluster's gossip.key")
	}
	if cfg.Port == 0 {
		cfg.Port = DefaultPort
	}
	if cfg.BindAddr == "" {
		cfg.BindAddr = "0.0.0.0"
	}
	if cfg.ProbeInterval <= 0 {
		cfg.ProbeInterval = time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	g := &Gossip{cfg: cfg, log: log, meta: cfg.Meta, roster: map[string]*Member{}}
	mc, err := memberlistConfig(cfg)
	if err != nil {
		return nil, err
	}
	mc.Delegate = delegate{g}
	mc.Events = events{g}
	mc.Logger = stdlog.New(&memberlistLog{log: log, onError: cfg.OnError}, "", 0)
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("gossip on %s:%d: %w", cfg.BindAddr, cfg.Port, err)
	}
	g.ml = ml
	n := ml.LocalNode()
	g.addr = net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
	return g, nil
}

// Addr is this node's advertised gossip address.
func (g *Gossip) Addr() string { return g.addr }

// Join contacts the seeds (host or host:port) and returns how many answered.
func (g *Gossip) Join(seeds []string) (int, error) {
	addrs := make([]string, 0, len(seeds))
	for _, s := range seeds {
		if _, _, err := net.SplitHostPort(s); err != nil {
			s = net.JoinHostPort(s, strconv.Itoa(DefaultPort))
		}
		addrs = append(addrs, s)
	}
	return g.ml.Join(addrs)
}

// JoinLoop joins the seeds, retrying with backoff until one answers or ctx ends.
func (g *Gossip) JoinLoop(ctx context.Context, seeds []string) {
	if len(seeds) == 0 {
		return
	}
	backoff := time.Second
	for {
		n, err := g.Join(seeds)
		if err == nil && n > 0 {
			g.log.Info("joined the cluster", "seeds", strings.Join(seeds, ","), "answered", n, "members", len(g.ml.Members()))
			return
		}
		g.log.Warn("no seed answered; retrying. Check DRAYAGE_JOIN, that the seeds run drayage, and that they share this node's gossip key and cluster",
			"seeds", strings.Join(seeds, ","), "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// HealthScore is memberlist's view of how well this node keeps up with the protocol's
// deadlines (its awareness): 0 is healthy, higher means missed probes and acks.
func (g *Gossip) HealthScore() int { return g.ml.GetHealthScore() }

// Members lists every node seen, this one included, sorted by name. The roster is fed
// only by memberlist's events, which run under memberlist's lock: the nodes its Members
// returns are shared with its goroutines and can't be read safely.
func (g *Gossip) Members() []Member {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	out := make([]Member, 0, len(g.roster))
	for _, m := range g.roster {
		if m.State == StateAlive {
			m.LastSeen = now
		}
		out = append(out, *m)
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Member returns one node of the roster.
func (g *Gossip) Member(name string) (Member, bool) {
	for _, m := range g.Members() {
		if m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}

// Known reports whether a node is a member that is not gone (for admitting its TLS
// connections).
func (g *Gossip) Known(name string) bool {
	m, ok := g.Member(name)
	return ok && m.State != StateLeft
}

// SetMeta changes what this node tells the others about itself and gossips the change
// within timeout.
func (g *Gossip) SetMeta(change func(*Meta), timeout time.Duration) error {
	g.mu.Lock()
	change(&g.meta)
	g.mu.Unlock()
	return g.ml.UpdateNode(timeout)
}

// Leave tells the cluster this node is leaving and stops gossiping.
func (g *Gossip) Leave(timeout time.Duration) error {
	g.mu.Lock()
	g.meta.Leaving = true
	g.mu.Unlock()
	_ = g.ml.UpdateNode(timeout) // gossip "leaving" first: the leave message itself looks like a death
	err := g.ml.Leave(timeout)
	if serr := g.ml.Shutdown(); err == nil {
		err = serr
	}
	return err
}

// update records n in state in the roster and returns its entry; the caller holds g.mu.
func (g *Gossip) update(n *memberlist.Node, state string) *Member {
	m, ok := g.roster[n.Name]
	if !ok {
		m = &Member{Name: n.Name, Since: time.Now()}
		g.roster[n.Name] = m
	}
	if m.State != state {
		m.Since = time.Now()
	}
	m.Addr = net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
	m.State = state
	var meta Meta
	if len(n.Meta) > 0 && json.Unmarshal(n.Meta, &meta) == nil {
		m.Meta = meta
	}
	if state == StateAlive {
		m.LastSeen = time.Now()
	}
	return m
}

// notify records an event. memberlist passes the node's state as it was before the
// event, so the state comes from the kind of event (and, for a leave, from the node's
// own "leaving" mark).
func (g *Gossip) notify(n *memberlist.Node, gone bool) {
	state := StateAlive
	if gone {
		state = StateDead
		var meta Meta
		if json.Unmarshal(n.Meta, &meta) == nil && meta.Leaving {
			state = StateLeft
		}
	}
	g.mu.Lock()
	before := ""
	if m, ok := g.roster[n.Name]; ok {
		before = m.State
	}
	m := *g.update(n, state)
	g.mu.Unlock()
	if m.State != before {
		g.log.Info("member changed", "member", m.Name, "state", m.State, "addr", m.Addr)
		if g.cfg.OnChange != nil {
			g.cfg.OnChange(m)
		}
	}
}

// delegate gives memberlist this node's metadata. Its methods run on memberlist's
// goroutines and do not block.
type delegate struct{ g *Gossip }

func (d delegate) NodeMeta(limit int) []byte {
	d.g.mu.Lock()
	b, _ := json.Marshal(d.g.meta)
	d.g.mu.Unlock()
	if len(b) > limit {
		return nil
	}
	return b
}
func (delegate) NotifyMsg([]byte)                           {}
func (delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (delegate) LocalState(join bool) []byte                { return nil }
func (delegate) MergeRemoteState(buf []byte, join bool)     {}

// events feeds memberlist's join/leave/update notifications into the roster.
type events struct{ g *Gossip }

func (e events) NotifyJoin(n *memberlist.Node)   { e.g.notify(n, false) }
func (e events) NotifyLeave(n *memberlist.Node)  { e.g.notify(n, true) }
func (e events) NotifyUpdate(n *memberlist.Node) { e.g.notify(n, false) }

// memberlistLog turns memberlist's "[LEVEL] memberlist: ..." lines into slog records,
// and reports its errors to onError.
type memberlistLog struct {
	log     *slog.Logger
	onError func()
}

func (w *memberlistLog) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	level := slog.LevelDebug
	switch {
	case strings.Contains(line, "[ERR]"):
		level = slog.LevelWarn
		if w.onError != nil {
			w.onError()
		}
	case strings.Contains(line, "[WARN]"):
		level = slog.LevelInfo
	}
	if i := strings.Index(line, "memberlist: "); i >= 0 {
		line = line[i+len("memberlist: "):]
	}
	w.log.Log(context.Background(), level, "gossip: "+line)
	return len(p), nil
}
