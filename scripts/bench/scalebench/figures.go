package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path"
	"strings"
	"text/tabwriter"
)

// figure is one measured figure, one JSON line in make scale's figures file (the
// integration benchmarks write the same lines).
type figure struct {
	Figure string  `json:"figure"`
	Value  float64 `json:"value"`
	Unit   string  `json:"unit"`
	Detail string  `json:"detail,omitempty"`
}

// goal is what a figure should be: below (or at most) a bound.
type goal struct {
	pattern   string // path.Match pattern over figure names
	bound     float64
	inclusive bool
}

func (g goal) String() string {
	if g.inclusive {
		return fmt.Sprintf("≤ %g", g.bound)
	}
	return fmt.Sprintf("< %g", g.bound)
}

func (g goal) met(v float64) bool { return v < g.bound || g.inclusive && v == g.bound }

// goals are issue 20's, in the figures' units.
var goals = []goal{
	{pattern: "gossip.*.converge", bound: 10},
	{pattern: "gossip.*.detect-p99", bound: 5},
	{pattern: "gossip.*.bytes", bound: 1000},
	{pattern: "volumes.*.list", bound: 1},
	{pattern: "volumes.*.inspect-p99", bound: 50},
	{pattern: "volumes.*.rss", bound: 128, inclusive: true},
	{pattern: "volumes.*.rss-after-list", bound: 128, inclusive: true},
	{pattern: "volumes.*.peak-rss", bound: 128, inclusive: true},
	{pattern: "mount.calls.local-idle", bound: 4, inclusive: true},
	{pattern: "mount.calls.local-again", bound: 4, inclusive: true},
	{pattern: "mount.latency.local-p99", bound: 10},
	{pattern: "mount.remote-beyond-pull", bound: 50},
	{pattern: "files.*.peak-rss", bound: 128, inclusive: true},
}

func goalOf(name string) (goal, bool) {
	for _, g := range goals {
		if ok, _ := path.Match(g.pattern, name); ok {
			return g, true
		}
	}
	return goal{}, false
}

// appendFigure adds a figure to the file at out ("": only prints it).
func appendFigure(out string, f figure) error {
	logf("%s: %.4g %s (%s)", f.Figure, f.Value, f.Unit, f.Detail)
	if out == "" {
		return nil
	}
	line, err := json.Marshal(f)
	if err != nil {
		return err
	}
	file, err := os.OpenFile(out, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	_, err = file.Write(append(line, '\n'))
	return errors.Join(err, file.Close())
}

// runFigure records one figure measured by a script.
func runFigure(args []string) error {
	fs := flag.NewFlagSet("figure", flag.ExitOnError)
	var f figure
	out := fs.String("out", "", "figures file")
	fs.StringVar(&f.Figure, "figure", "", "name")
	fs.Float64Var(&f.Value, "value", 0, "value")
	fs.StringVar(&f.Unit, "unit", "", "unit")
	fs.StringVar(&f.Detail, "detail", "", "how it was measured")
	_ = fs.Parse(args)
	if f.Figure == "" {
		return errors.New("figure: -figure NAME is required")
	}
	return appendFigure(*out, f)
}

// runTable prints the figures in a file, each with its goal and whether it is met.
func runTable(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: scalebench table FIGURES")
	}
	file, err := os.Open(args[0])
	if err != nil {
		return err
	}
	defer file.Close()
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "FIGURE\tMEASURED\tGOAL\tMET\tHOW")
	sc := bufio.NewScanner(file)
	for sc.Scan() {
		var f figure
		if err := json.Unmarshal(sc.Bytes(), &f); err != nil {
			return fmt.Errorf("%s: %w", args[0], err)
		}
		want, met := "", ""
		if g, ok := goalOf(f.Figure); ok {
			want, met = g.String()+" "+f.Unit, "no"
			if g.met(f.Value) {
				met = "yes"
			}
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", f.Figure, strings.TrimSpace(fmt.Sprintf("%.4g %s", f.Value, f.Unit)), want, met, f.Detail)
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return w.Flush()
}
