package chaos

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"
)

// Summary is the table a campaign prints at its end: operations by outcome, faults
// injected, invariants checked, and how long it took.
func Summary(h *History, r Report, seeds []uint64, rounds int, took time.Duration) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "chaos: seeds %v, %d rounds, %s\n\n", seeds, rounds, took.Round(time.Second))
	outcomes := []string{Ok, Refused, Timeout}
	fmt.Fprintln(w, "operation\tok\trefused\ttimeout\t")
	counts := map[string]map[string]int{}
	for _, op := range h.Ops {
		if counts[op.Kind] == nil {
			counts[op.Kind] = map[string]int{}
		}
		counts[op.Kind][op.Outcome]++
	}
	for _, k := range []string{OpWrite, OpMove, OpCopy, OpPromote, OpCreate, OpRemove, OpRestart} {
		fmt.Fprintf(w, "%s\t", k)
		for _, o := range outcomes {
			fmt.Fprintf(w, "%d\t", counts[k][o])
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "\nfault\tinjected\t")
	faults := map[string]int{}
	for _, f := range h.Faults {
		faults[f.Kind]++
	}
	for _, k := range Faults {
		if faults[k] > 0 {
			fmt.Fprintf(w, "%s\t%d\t\n", k, faults[k])
		}
	}
	fmt.Fprintln(w, "\ninvariant\tchecked\tviolated\t")
	violated := map[string]int{}
	for _, v := range r.Violations {
		violated[v.Invariant]++
	}
	for _, k := range sortedKeys(r.Checked) {
		fmt.Fprintf(w, "%s\t%d\t%d\t\n", k, r.Checked[k], violated[k])
	}
	fmt.Fprintf(w, "\nrecords acknowledged\t%d\t\nin the volumes\t%d\t\nonly in -diverged- copies\t%d\t\n", r.Acked, r.InLive, r.Diverged)
	_ = w.Flush()
	return b.String()
}
