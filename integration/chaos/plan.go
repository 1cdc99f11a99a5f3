package chaos

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"time"
)

// Operation kinds.
const (
	OpWrite   = "write"   // a container appends Count records to the volume's log
	OpMove    = "move"    // drayage volume move VOLUME --to TARGET
	OpCopy    = "copy"    // drayage volume copy VOLUME NEW --to TARGET
	OpPromote = "promote" // drayage volume promote VOLUME --to TARGET [--accept-loss]
	OpCreate  = "create"  // docker volume create of a new volume
	OpRemove  = "rm"      // docker volume rm of a volume this round created
	OpRestart = "restart" // docker plugin disable -f, then enable
)

// Fault kinds. Each hits one node (Node) and heals after For.
const (
	FaultKillPlugin = "kill-plugin" // kill -9 of the node's daemon; the engine restarts it
	FaultCrash      = "crash"       // every process of the node at once, then a restart
	FaultCut        = "cut"         // full partition
	FaultCutIn      = "cut-in"      // one-way: the node sends, receives nothing
	FaultCutOut     = "cut-out"     // one-way: the node receives, sends nothing
	FaultCutStore   = "cut-store"   // only the store's ports
	FaultCutData    = "cut-data"    // only the data port
	FaultPause      = "pause"       // SIGSTOP of the daemon for 0.5-10 lease TTLs
	FaultLeaderKill = "leader-kill" // kill -9 of the store's leader (embedded: its node's daemon)
	FaultDiskFull   = "disk-full"   // the node's state filesystem filled to the last block
	FaultSlowNet    = "slow-net"    // a slow link (tc tbf) that loses packets (iptables statistic)
	FaultRestore    = "restore"     // the store rolled back to a snapshot from the round's start (etcd)
)

// Faults are every fault kind; a campaign runs those its store allows (Config.Faults).
var Faults = []string{FaultKillPlugin, FaultCrash, FaultCut, FaultCutIn, FaultCutOut, FaultCutStore,
	FaultCutData, FaultPause, FaultLeaderKill, FaultDiskFull, FaultSlowNet, FaultRestore}

// Config is what a campaign's plans are drawn from.
type Config struct {
	Nodes   int      // how many nodes (indexes 0..Nodes-1)
	Prefix  string   // of the names of the volumes rounds create
	Volumes []string // the pool every round works on
	Faults  []string // the kinds to draw from
	// TTL is the store lease TTL: pauses last 0.5-10 TTLs, capped at MaxPause if set.
	TTL      time.Duration
	MaxPause time.Duration
}

// OpPlan is one operation of a round, At after the round starts.
type OpPlan struct {
	At     time.Duration
	Kind   string
	Volume string
	Node   int // where it runs
	Target int // move, copy, promote: the node named
	// Count is how many records a write appends; Replicas a create's replicas option.
	Count, Replicas int
	AcceptLoss      bool // promote --accept-loss
}

// FaultPlan is a round's fault: Kind hits node Node (-1: the store's leader) At after
// the round starts, and heals For later.
type FaultPlan struct {
	Kind    string
	Node    int
	At, For time.Duration
}

// Plan is one round.
type Plan struct {
	Seed  uint64
	Round int
	Fault FaultPlan
	Ops   []OpPlan
}

// PlanRound draws round's plan from seed: the same seed, round and config give the same
// plan.
func PlanRound(cfg Config, seed uint64, round int) Plan {
	r := rand.New(rand.NewPCG(seed, uint64(round)))
	p := Plan{Seed: seed, Round: round}
	dur := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(r.Int64N(int64(hi-lo)+1)) }
	p.Fault = FaultPlan{Kind: cfg.Faults[r.IntN(len(cfg.Faults))], Node: r.IntN(cfg.Nodes), At: dur(0, 3*time.Second)}
	switch p.Fault.Kind {
	case FaultPause:
		p.Fault.For = dur(cfg.TTL/2, 10*cfg.TTL)
		if cfg.MaxPause > 0 {
			p.Fault.For = min(p.Fault.For, cfg.MaxPause)
		}
	case FaultLeaderKill:
		p.Fault.Node, p.Fault.For = -1, dur(0, 2*time.Second)
	case FaultKillPlugin:
		p.Fault.For = 0
	default:
		p.Fault.For = dur(time.Second, 2*cfg.TTL)
	}
	other := func(n int) int { return (n + 1 + r.IntN(cfg.Nodes-1)) % cfg.Nodes }
	// Writes most of all, on the pool; each other kind now and then.
	for i, n := 0, 3+r.IntN(3); i < n; i++ {
		op := OpPlan{At: dur(0, 5*time.Second), Volume: cfg.Volumes[r.IntN(len(cfg.Volumes))], Node: r.IntN(cfg.Nodes)}
		op.Target = other(op.Node)
		switch k := r.IntN(20); {
		case k < 12:
			op.Kind, op.Count = OpWrite, 5+r.IntN(60)
		case k < 14:
			op.Kind = OpMove
		case k < 15:
			op.Kind = OpCopy
		case k < 17:
			op.Kind, op.AcceptLoss = OpPromote, r.IntN(2) == 0
		case k < 19:
			// A new volume, removed again later in the round from some node.
			op.Kind, op.Replicas = OpCreate, 1+r.IntN(min(3, cfg.Nodes))
			op.Volume = fmt.Sprintf("%sr%d-%d", cfg.Prefix, round, i)
			p.Ops = append(p.Ops, OpPlan{At: op.At + dur(time.Second, 4*time.Second), Kind: OpRemove, Volume: op.Volume, Node: r.IntN(cfg.Nodes)})
		default:
			op.Kind = OpRestart
		}
		p.Ops = append(p.Ops, op)
	}
	slices.SortStableFunc(p.Ops, func(a, b OpPlan) int { return int(a.At - b.At) })
	return p
}
