package chaos

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
)

// Invariants the checker judges (and the driver, for those it measures on the nodes).
const (
	InvWellFormed   = "every line of a copy is a record of a write of that volume"
	InvNoDuplicate  = "no record twice in one copy"
	InvWriteInOrder = "a write's records in a copy are its first ones, in order"
	InvOneWriter    = "one node writes at a time: writes from two nodes never interleave in a copy"
	InvRealTime     = "a write that ended before another began comes first in a copy"
	InvAckedKept    = "every acknowledged record is in the volume or a -diverged- copy"
	InvOneOwner     = "the store never named two owners at one epoch"
	InvEpochsRise   = "epochs only increase (but across a store restore)"
)

// Copy is one copy of a volume a node holds: the lines of its log, in order.
type Copy struct {
	Name  string // the volume's name, a NAME-diverged-EPOCH-NODE one, or a copy's
	Node  string
	Lines []string
}

func (c *Copy) String() string { return fmt.Sprintf("volume %s on node %s", c.Name, c.Node) }

// Final is what the nodes hold at the end of a campaign, per volume of the pool.
type Final struct {
	Live     map[string]*Copy   // the owner's copy (none: the volume is gone)
	Diverged map[string][]*Copy // the volume's -diverged- copies, on any node
	// Others are the other copies (replicas, a former owner's copy not yet judged): a
	// check between rounds finds an acknowledged record there too; the final one doesn't.
	Others map[string][]*Copy
}

// Violation is an invariant that did not hold.
type Violation struct {
	Invariant, Volume, Detail string
}

func (v Violation) String() string {
	return fmt.Sprintf("volume %s: %s: %s", v.Volume, v.Invariant, v.Detail)
}

// Report is what a check found, and how many times it checked each invariant.
type Report struct {
	Checked    map[string]int
	Violations []Violation
	// Acked is how many records were acknowledged; InLive how many of them are in the
	// volumes' copies, and Diverged how many only in -diverged- copies.
	Acked, InLive, Diverged int
}

func (r *Report) check(inv string, ok bool, volume, format string, args ...any) {
	if r.Checked == nil {
		r.Checked = map[string]int{}
	}
	r.Checked[inv]++
	if !ok {
		r.Violations = append(r.Violations, Violation{inv, volume, fmt.Sprintf(format, args...)})
	}
}

// Merge adds another report's counts and violations to r.
func (r *Report) Merge(o Report) {
	for k, v := range o.Checked {
		if r.Checked == nil {
			r.Checked = map[string]int{}
		}
		r.Checked[k] += v
	}
	r.Violations = append(r.Violations, o.Violations...)
	r.Acked, r.InLive, r.Diverged = r.Acked+o.Acked, r.InLive+o.InLive, r.Diverged+o.Diverged
}

// Fail records a violation the driver found on the nodes (a claim stuck, a leak).
func (r *Report) Fail(inv, volume, format string, args ...any) {
	r.check(inv, false, volume, format, args...)
}

// Pass counts a check the driver made that held.
func (r *Report) Pass(inv string) { r.check(inv, true, "", "") }

var recordLine = regexp.MustCompile(`^(o[0-9]+)\.([0-9]+)$`)

// Check judges the history of volumes against what the nodes hold. final says whether
// every fault has healed and every former owner has had time to keep its diverged
// writes: then an acknowledged record must be in the volume or a -diverged- copy;
// before, in any copy.
func Check(h *History, volumes []string, f Final, final bool) Report {
	h.mu.Lock()
	defer h.mu.Unlock()
	var r Report
	writes := map[string]*Op{}
	for _, op := range h.Ops {
		if op.Kind == OpWrite {
			writes[op.ID] = op
		}
	}
	for _, v := range volumes {
		copies := append([]*Copy{}, f.Diverged[v]...)
		if c := f.Live[v]; c != nil {
			copies = append(copies, c)
		}
		for _, c := range copies {
			r.checkCopy(v, c, writes)
		}
		r.checkAcked(v, f, writes, final)
	}
	r.checkOwners(h)
	return r
}

// CheckCopy judges a copy of volume made by drayage volume copy: it must be a state the
// volume was in (well-formed, in order, one writer at a time).
func CheckCopy(h *History, volume string, c *Copy) Report {
	h.mu.Lock()
	writes := map[string]*Op{}
	for _, op := range h.Ops {
		if op.Kind == OpWrite {
			writes[op.ID] = op
		}
	}
	h.mu.Unlock()
	var r Report
	r.checkCopy(volume, c, writes)
	return r
}

// checkCopy judges one copy's lines: each a record of a write of volume, none twice,
// each write's records from its first, in order; writes from different nodes never
// interleave (containers on one node may share a volume; two nodes may not), and a write
// that ended before another began comes first.
func (r *Report) checkCopy(volume string, c *Copy, writes map[string]*Op) {
	seen := map[string]bool{}
	type span struct {
		op          *Op
		first, last int
	}
	spans := map[string]*span{}
	var order []*span
	next := map[string]int{}
	bad, dup, disorder := "", "", ""
	for i, line := range c.Lines {
		m := recordLine.FindStringSubmatch(line)
		op := (*Op)(nil)
		if m != nil {
			op = writes[m[1]]
		}
		if op == nil || op.Volume != volume {
			if bad == "" {
				bad = fmt.Sprintf("line %d is %q", i+1, line)
			}
			continue
		}
		if seen[line] {
			if dup == "" {
				dup = fmt.Sprintf("line %d, %s, came before", i+1, line)
			}
			continue
		}
		seen[line] = true
		seq, _ := strconv.Atoi(m[2])
		if seq != next[op.ID]+1 && disorder == "" {
			disorder = fmt.Sprintf("line %d is %s, after %s.%d", i+1, line, op.ID, next[op.ID])
		}
		next[op.ID] = seq
		if s := spans[op.ID]; s != nil {
			s.last = i + 1
		} else {
			spans[op.ID] = &span{op, i + 1, i + 1}
			order = append(order, spans[op.ID])
		}
	}
	r.check(InvWellFormed, bad == "", volume, "%s: %s", c, bad)
	r.check(InvNoDuplicate, dup == "", volume, "%s: %s", c, dup)
	r.check(InvWriteInOrder, disorder == "", volume, "%s: %s", c, disorder)
	for i, a := range order {
		for _, b := range order[i+1:] { // b's first record follows a's first
			if a.op.Node != b.op.Node {
				r.check(InvOneWriter, b.first > a.last, volume, "%s: %s (node %d) wrote lines %d-%d, %s (node %d) lines %d-%d: two nodes wrote at once",
					c, a.op.ID, a.op.Node, a.first, a.last, b.op.ID, b.op.Node, b.first, b.last)
			}
			ok := b.op.End.IsZero() || !b.op.End.Before(a.op.Start)
			r.check(InvRealTime, ok, volume, "%s: %s's records come first, but %s ended at %s, before %s began at %s",
				c, a.op.ID, b.op.ID, b.op.End.Format("15:04:05.000"), a.op.ID, a.op.Start.Format("15:04:05.000"))
		}
	}
}

// checkAcked finds every acknowledged record of volume's writes in its live copy, or
// else in a -diverged- copy (or, before the end, in any copy).
func (r *Report) checkAcked(volume string, f Final, writes map[string]*Op, final bool) {
	live := lineSet(f.Live[volume])
	diverged := map[string]bool{}
	for _, c := range f.Diverged[volume] {
		for l := range lineSet(c) {
			diverged[l] = true
		}
	}
	if !final {
		for _, c := range f.Others[volume] {
			for l := range lineSet(c) {
				diverged[l] = true
			}
		}
	}
	where := "the volume or a -diverged- copy"
	if !final {
		where = "any copy"
	}
	for _, id := range sortedKeys(writes) {
		op := writes[id]
		if op.Volume != volume {
			continue
		}
		for _, a := range op.Acks {
			r.Acked++
			switch {
			case live[a.Rec]:
				r.InLive++
			case diverged[a.Rec]:
				r.Diverged++
			}
			r.check(InvAckedKept, live[a.Rec] || diverged[a.Rec], volume,
				"record %s, acknowledged at %s by write %s on node %d, is in no copy (looked in %s)",
				a.Rec, a.At.Format("15:04:05.000"), op.ID, op.Node, where)
		}
	}
}

func lineSet(c *Copy) map[string]bool {
	set := map[string]bool{}
	if c != nil {
		for _, l := range c.Lines {
			set[l] = true
		}
	}
	return set
}

// checkOwners judges the records the store held: one owner per epoch, epochs rising,
// each within the stretches between store restores.
func (r *Report) checkOwners(h *History) {
	type key struct {
		volume string
		epoch  uint64
	}
	owners := map[key]string{}
	last := map[string]Owner{}
	rollback := 0
	for _, o := range h.Owners {
		for rollback < len(h.Rollbacks) && !o.At.Before(h.Rollbacks[rollback]) {
			rollback++
			owners, last = map[key]string{}, map[string]Owner{}
		}
		k := key{o.Volume, o.Epoch}
		prev, ok := owners[k]
		r.check(InvOneOwner, !ok || prev == o.Node, o.Volume, "epoch %d named node %s, and at %s node %s", o.Epoch, prev, o.At.Format("15:04:05.000"), o.Node)
		owners[k] = o.Node
		before, ok := last[o.Volume]
		r.check(InvEpochsRise, !ok || o.Epoch >= before.Epoch, o.Volume, "epoch %d (node %s) at %s after epoch %d (node %s)",
			o.Epoch, o.Node, o.At.Format("15:04:05.000"), before.Epoch, before.Node)
		last[o.Volume] = o
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
