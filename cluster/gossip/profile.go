package gossip

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/hashicorp/memberlist"
)

// Profiles of gossip timings (Config.Profile).
const (
	// ProfileLAN is memberlist's LAN preset, with the daemon's probe interval: a few
	// dozen nodes.
	ProfileLAN = "lan"
	// ProfileLarge is for hundreds to thousands of nodes on a LAN: memberlist stretches
	// the time a node stays suspect with the cluster's size (log10 n), so probes come
	// twice as often and a suspect is declared dead after a third of the LAN preset's
	// wait; news spreads faster (every 100 ms, to 4 nodes, only while there is news),
	// and full-state syncs, whose size grows with the cluster, come half as often.
	ProfileLarge = "large"
)

// ErrUnknownProfile is returned for a profile name no profile has.
var ErrUnknownProfile = errors.New("no such gossip profile")

// ProfileConfig returns a Config with the named profile's timings ("" is the default).
func ProfileConfig(name string) (Config, error) {
	cfg := Config{Profile: name}
	if _, err := memberlistConfig(cfg); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// memberlistConfig is memberlist's configuration for cfg: its profile's timings, then
// cfg's own settings.
func memberlistConfig(cfg Config) (*memberlist.Config, error) {
	mc := memberlist.DefaultLANConfig()
	switch cfg.Profile {
	case "", ProfileLAN:
		mc.ProbeInterval = time.Second
	case ProfileLarge:
		mc.ProbeInterval = 500 * time.Millisecond
		mc.ProbeTimeout = 250 * time.Millisecond
		mc.SuspicionMult = 2
		mc.GossipInterval = 100 * time.Millisecond
		mc.GossipNodes = 4
		mc.PushPullInterval = time.Minute
	default:
		return nil, fmt.Errorf("gossip profile %q: %w", cfg.Profile, ErrUnknownProfile)
	}
	if cfg.ProbeInterval > 0 {
		mc.ProbeInterval = cfg.ProbeInterval
	}
	mc.Name = cfg.Node
	mc.BindAddr = cfg.BindAddr
	mc.BindPort = cfg.Port
	mc.AdvertiseAddr = cfg.AdvertiseAddr
	mc.AdvertisePort = cfg.Port
	mc.SecretKey = cfg.Key
	mc.GossipVerifyIncoming = true
	mc.GossipVerifyOutgoing = true
	mc.Label = cfg.Label
	if cfg.Transport != nil {
		mc.Transport = cfg.Transport
	}
	return mc, nil
}

// Describe says what cfg's timings are in a cluster of n nodes: memberlist scales the
// time a node stays suspect, and the interval of its full-state syncs, with n.
func Describe(cfg Config, n int) string {
	mc, err := memberlistConfig(cfg)
	if err != nil {
		return err.Error()
	}
	scale := math.Max(1, math.Log10(float64(n)))
	suspect := time.Duration(float64(mc.SuspicionMult) * scale * float64(mc.ProbeInterval))
	pushPull := mc.PushPullInterval
	if n > 32 {
		pushPull *= time.Duration(math.Ceil(math.Log2(float64(n))-5) + 1)
	}
	return fmt.Sprintf("probe every %v (timeout %v), suspect for %v, gossip every %v to %d, full sync every %v",
		mc.ProbeInterval, mc.ProbeTimeout, suspect.Round(time.Millisecond), mc.GossipInterval, mc.GossipNodes, pushPull)
}
