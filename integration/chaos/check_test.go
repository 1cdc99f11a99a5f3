package chaos

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)

// write is a write of volume v by op id from start to end (seconds after t0), which
// acknowledged records 1..acked.
func write(id, v string, start, end float64, acked int) *Op {
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	op := &Op{OpPlan: OpPlan{Kind: OpWrite, Volume: v, Count: acked}, ID: id, Start: at(start), End: at(end), Outcome: Ok}
	for i := 1; i <= acked; i++ {
		op.Acks = append(op.Acks, Ack{Rec: fmt.Sprintf("%s.%d", id, i), At: at(start + float64(i)*(end-start)/float64(acked+1))})
	}
	return op
}

func records(id string, from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprintf("%s.%d", id, i))
	}
	return out
}

func cat(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// twoWrites: o1 wrote 3 records on node-a, then o2 wrote 2.
func twoWrites() *History {
	h := &History{}
	h.Add(write("o1", "v", 0, 1, 3))
	h.Add(write("o2", "v", 2, 3, 2))
	h.Ops[1].Node = 1
	return h
}

func violated(r Report) []string {
	var out []string
	for _, v := range r.Violations {
		out = append(out, v.Invariant)
	}
	return out
}

func TestCheckPassesAVolumeThatHoldsEveryRecordInOrder(t *testing.T) {
	live := &Copy{Name: "v", Node: "node-b", Lines: cat(records("o1", 1, 3), records("o2", 1, 2), []string{"o2.3"})}
	r := Check(twoWrites(), []string{"v"}, Final{Live: map[string]*Copy{"v": live}}, true)
	assert.Empty(t, r.Violations)
	assert.Equal(t, 5, r.Acked)
	assert.Equal(t, 5, r.InLive)
	assert.Equal(t, 1, r.Checked[InvWellFormed], "one copy")
}

// Each broken final state is caught by its invariant, and only by it.
func TestCheckFindsEachBrokenInvariant(t *testing.T) {
	cases := map[string]struct {
		live     []string
		diverged []string
		want     string
	}{
		"a lost record":        {live: cat(records("o1", 1, 2), records("o2", 1, 2)), want: InvAckedKept},
		"a stranger's line":    {live: cat(records("o1", 1, 3), records("o2", 1, 2), []string{"x"}), want: InvWellFormed},
		"a record twice":       {live: cat(records("o1", 1, 3), records("o2", 1, 2), []string{"o2.2"}), want: InvNoDuplicate},
		"a gap in a write":     {live: cat(records("o1", 1, 3), []string{"o2.2", "o2.1"}), want: InvWriteInOrder},
		"two writers at once":  {live: cat(records("o1", 1, 2), records("o2", 1, 2), []string{"o1.3"}), want: InvOneWriter},
		"out of real-time":     {live: cat(records("o2", 1, 2), records("o1", 1, 3)), want: InvRealTime},
		"lost from the volume": {live: records("o2", 1, 2), diverged: records("o1", 1, 2), want: InvAckedKept},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			f := Final{Live: map[string]*Copy{"v": {Name: "v", Node: "node-b", Lines: c.live}}}
			if c.diverged != nil {
				f.Diverged = map[string][]*Copy{"v": {{Name: "v-diverged-1-node-a", Node: "node-a", Lines: c.diverged}}}
			}
			r := Check(twoWrites(), []string{"v"}, f, true)
			assert.Equal(t, []string{c.want}, violated(r), "%v", r.Violations)
		})
	}
}

// A failover: node-a's write acknowledged o1.3 after the last sync; the promoted replica
// has o1.1-2 and o2 went on from it; node-a kept o1.1-3 as a diverged copy. Nothing is
// lost. Before node-a judged its copy, the record is in one of the other copies.
func TestCheckFindsARecordOnlyInADivergedCopy(t *testing.T) {
	live := &Copy{Name: "v", Node: "node-b", Lines: cat(records("o1", 1, 2), records("o2", 1, 2))}
	old := &Copy{Name: "v-diverged-1-node-a", Node: "node-a", Lines: records("o1", 1, 3)}
	r := Check(twoWrites(), []string{"v"}, Final{Live: map[string]*Copy{"v": live}, Diverged: map[string][]*Copy{"v": {old}}}, true)
	assert.Empty(t, r.Violations)
	assert.Equal(t, 1, r.Diverged)

	unjudged := &Copy{Name: "v", Node: "node-a", Lines: records("o1", 1, 3)}
	f := Final{Live: map[string]*Copy{"v": live}, Others: map[string][]*Copy{"v": {unjudged}}}
	assert.Empty(t, Check(twoWrites(), []string{"v"}, f, false).Violations, "between rounds, any copy")
	assert.Equal(t, []string{InvAckedKept}, violated(Check(twoWrites(), []string{"v"}, f, true)), "at the end, only the volume or a diverged copy")
}

func TestCheckJudgesTheStoreRecords(t *testing.T) {
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	h := &History{Owners: []Owner{{"v", "node-a", 1, at(0)}, {"v", "node-b", 2, at(1)}, {"v", "node-c", 2, at(2)}, {"v", "node-a", 1, at(3)}}}
	r := Check(h, []string{"v"}, Final{}, true)
	assert.Equal(t, []string{InvOneOwner, InvEpochsRise}, violated(r))

	// Across a restore of the store, an epoch may come back.
	h = &History{Owners: []Owner{{"v", "node-a", 1, at(0)}, {"v", "node-b", 2, at(1)}, {"v", "node-a", 1, at(3)}}, Rollbacks: []time.Time{at(2)}}
	assert.Empty(t, Check(h, []string{"v"}, Final{}, true).Violations)
}

func TestCheckCopyJudgesAVolumeCopy(t *testing.T) {
	assert.Empty(t, CheckCopy(twoWrites(), "v", &Copy{Name: "w", Lines: records("o1", 1, 2)}).Violations)
	assert.Equal(t, []string{InvOneWriter}, violated(CheckCopy(twoWrites(), "v", &Copy{Name: "w", Lines: []string{"o1.1", "o2.1", "o1.2"}})))
}

// Two containers on one node may write a volume at once; their records interleave.
func TestCheckLetsContainersOnOneNodeShareAVolume(t *testing.T) {
	h := &History{}
	h.Add(write("o1", "v", 0, 3, 3))
	h.Add(write("o2", "v", 1, 2, 2))
	live := &Copy{Name: "v", Lines: []string{"o1.1", "o2.1", "o1.2", "o2.2", "o1.3"}}
	assert.Empty(t, Check(h, []string{"v"}, Final{Live: map[string]*Copy{"v": live}}, true).Violations)
	h.Ops[1].Node = 1
	assert.Equal(t, []string{InvOneWriter}, violated(Check(h, []string{"v"}, Final{Live: map[string]*Copy{"v": live}}, true)))
}

func TestPlanRoundIsDrawnFromTheSeed(t *testing.T) {
	cfg := Config{Nodes: 3, Prefix: "s-", Volumes: []string{"a", "b"}, Faults: Faults, TTL: 5 * time.Second, MaxPause: 15 * time.Second}
	require.Equal(t, PlanRound(cfg, 7, 3), PlanRound(cfg, 7, 3))
	assert.NotEqual(t, PlanRound(cfg, 7, 3), PlanRound(cfg, 8, 3))
	kinds := map[string]bool{}
	for round := range 400 {
		p := PlanRound(cfg, 1, round)
		kinds[p.Fault.Kind] = true
		if p.Fault.Kind == FaultPause {
			assert.LessOrEqual(t, p.Fault.For, 15*time.Second)
			assert.GreaterOrEqual(t, p.Fault.For, 2500*time.Millisecond)
		}
		for _, op := range p.Ops {
			kinds[op.Kind] = true
			if op.Kind != OpWrite && op.Kind != OpCreate && op.Kind != OpRemove && op.Kind != OpRestart {
				assert.NotEqual(t, op.Node, op.Target, "a move, copy or promotion names another node")
			}
		}
	}
	for _, k := range append([]string{OpWrite, OpMove, OpCopy, OpPromote, OpCreate, OpRemove, OpRestart}, Faults...) {
		assert.True(t, kinds[k], "400 rounds draw %s", k)
	}
}
