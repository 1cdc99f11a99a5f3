package chaos

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// Outcomes of an operation.
const (
	Ok      = "ok"      // it did what it was asked
	Refused = "refused" // it failed, saying why (a fault in the way, a busy volume)
	Timeout = "timeout" // no answer within its deadline; killed
)

// Op is one operation as it happened.
type Op struct {
	OpPlan
	ID         string
	Round      int
	Start, End time.Time // End is zero if it's not known when it stopped having effects
	Outcome    string
	// Acks are the records a write reported durable, in order; Found what it found in
	// the log at its start (lines, and lines that are no record).
	Acks       []Ack
	Found, Bad int
	Output     string // the end of what it printed, when it did not succeed
}

// Ack is one record a write reported durable, and when the report arrived.
type Ack struct {
	Rec string
	At  time.Time
}

// Fault is one fault as it happened.
type Fault struct {
	FaultPlan
	Round         int
	Node          string
	Start, Healed time.Time
	Detail        string
}

// Owner is one version of a volume's record, as a watch of the store saw it.
type Owner struct {
	Volume, Node string
	Epoch        uint64
	At           time.Time
}

// History is what a campaign did and saw; safe for concurrent use.
type History struct {
	mu     sync.Mutex
	Ops    []*Op
	Faults []*Fault
	Owners []Owner
	// Rollbacks are when the store was restored from an old snapshot: epochs may go
	// down there.
	Rollbacks []time.Time
}

// Add records an operation (its fields are filled in by its runner, which owns it
// until it returns).
func (h *History) Add(op *Op) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.Ops = append(h.Ops, op)
}

// AddFault records a fault.
func (h *History) AddFault(f *Fault) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.Faults = append(h.Faults, f)
}

// AddOwner records a version of a volume record.
func (h *History) AddOwner(o Owner) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.Owners = append(h.Owners, o)
}

// AddRollback records a restore of the store.
func (h *History) AddRollback(at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.Rollbacks = append(h.Rollbacks, at)
}

// Of is the history of one volume: its operations and the faults of the rounds they
// ran in, as lines for a person to read (a failing run prints it).
func (h *History) Of(volume string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	rounds := map[int]bool{}
	var lines []string
	line := func(at time.Time, s string) { lines = append(lines, at.Format("15:04:05.000")+" "+s) }
	for _, op := range h.Ops {
		if op.Volume != volume && !strings.HasPrefix(op.Volume, volume+"-") {
			continue
		}
		rounds[op.Round] = true
		s := fmt.Sprintf("round %d %s %s on node %d", op.Round, op.ID, op.Kind, op.Node)
		if op.Kind != OpWrite && op.Kind != OpCreate && op.Kind != OpRemove && op.Kind != OpRestart {
			s += fmt.Sprintf(" to node %d", op.Target)
		}
		if op.Kind == OpWrite {
			s += fmt.Sprintf(" found %d lines, acked %d of %d", op.Found, len(op.Acks), op.Count)
			if len(op.Acks) > 0 {
				s += fmt.Sprintf(" (last %s at %s)", op.Acks[len(op.Acks)-1].Rec, op.Acks[len(op.Acks)-1].At.Format("15:04:05.000"))
			}
		}
		s += ": " + op.Outcome
		if op.End.IsZero() {
			s += " (end unknown)"
		} else {
			s += fmt.Sprintf(" after %s", op.End.Sub(op.Start).Round(10*time.Millisecond))
		}
		if op.Output != "" {
			s += " — " + op.Output
		}
		line(op.Start, s)
	}
	for _, f := range h.Faults {
		if rounds[f.Round] {
			line(f.Start, fmt.Sprintf("round %d fault %s on %s, healed at %s %s", f.Round, f.Kind, f.Node, f.Healed.Format("15:04:05.000"), f.Detail))
		}
	}
	for _, o := range h.Owners {
		if o.Volume == volume {
			line(o.At, fmt.Sprintf("record: owner %s at epoch %d", o.Node, o.Epoch))
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// ForgottenByRollback tells whether volume name was made (created, or a copy made) in a
// round whose store was then restored from the snapshot taken at the round's start:
// the store forgot it, while the node that holds it did not, and writes its record again
// (a copy is newer than the record). A removal in between finds no such volume and
// succeeds without reaching it, so it can come back after its round.
func (h *History) ForgottenByRollback(name string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, op := range h.Ops {
		made := (op.Kind == OpCreate && op.Volume == name) || (op.Kind == OpCopy && op.Volume+"-copy-"+op.ID == name)
		if !made {
			continue
		}
		for _, f := range h.Faults {
			if f.Kind == FaultRestore && f.Round == op.Round && op.Start.Before(f.Healed) {
				return true
			}
		}
	}
	return false
}
