package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/docker/go-units"

	"github.com/drayage/drayage/daemon/volume"
	"github.com/drayage/drayage/progress"
)

// How the volume commands put the daemon's answers in words.

// printVolumes is 'drayage volume ls': a table, a volume a line.
func printVolumes(out io.Writer, infos []volume.Info) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tNODE\tSTATE\tMOUNTS\tREPLICAS\tCREATED")
	for _, v := range infos {
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\n", v.Name, v.Node, v.State, v.Mounts, replicaSummary(v), ago(v.Created))
	}
	return w.Flush()
}

// printInfos is 'drayage volume inspect': each volume's block, a blank line between.
func printInfos(out io.Writer, infos []volume.Info) error {
	for i, v := range infos {
		if i > 0 {
			fmt.Fprintln(out)
		}
		printInfo(out, v)
	}
	return nil
}

// printRemoved is 'drayage volume rm': the name of each volume removed.
func printRemoved(out io.Writer, removed []volume.RemoveResult) error {
	for _, res := range removed {
		fmt.Fprintln(out, res.Volume)
	}
	return nil
}

func printInfo(out io.Writer, v volume.Info) {
	w := tabwriter.NewWriter(out, 0, 4, 1, ' ', 0)
	fmt.Fprintf(w, "Name:\t%s\n", v.Name)
	fmt.Fprintf(w, "Node:\t%s\n", v.Node)
	fmt.Fprintf(w, "State:\t%s\n", v.State)
	if v.Problem != "" {
		fmt.Fprintf(w, "Problem:\t%s\n", v.Problem)
	}
	if p := v.Progress; p != nil {
		what := "Moving to " + p.To
		switch p.Kind {
		case progress.KindCopy:
			what = "Copying to " + p.To + " as " + p.Copy
		case progress.KindSeed:
			what = "Filling" // the progress names the source
		}
		files := ""
		if p.TotalFiles > 0 || p.Kind != progress.KindSeed { // a download counts no files
			files = fmt.Sprintf(", %d of %d files", p.Files, p.TotalFiles)
		}
		fmt.Fprintf(w, "%s:\t%s%s, started %s\n", what, p, files, ago(p.Started))
	}
	fmt.Fprintf(w, "Mounts:\t%d\n", v.Mounts)
	if v.Mountpoint != "" {
		fmt.Fprintf(w, "Mountpoint:\t%s\n", v.Mountpoint)
	}
	if v.Size >= 0 {
		fmt.Fprintf(w, "Size:\t%s (%d bytes)\n", units.BytesSize(float64(v.Size)), v.Size)
	}
	opts := make([]string, 0, len(v.Options))
	for _, k := range slices.Sorted(maps.Keys(v.Options)) {
		opts = append(opts, k+"="+v.Options[k])
	}
	if len(opts) > 0 {
		fmt.Fprintf(w, "Options:\t%s\n", strings.Join(opts, " "))
	}
	fmt.Fprintf(w, "Created:\t%s (%s)\n", v.Created.Local().Format(time.RFC3339), ago(v.Created))
	if v.Copies > 1 || len(v.Replicas) > 0 {
		fmt.Fprintf(w, "Replicas:\t%s\n", replicaSummary(v))
	}
	_ = w.Flush()
	if len(v.Replicas) > 0 {
		rw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(rw, "  NODE\tSTATE\tSYNCED\tLAG\tLAST SENT\tROOT")
		for _, r := range v.Replicas {
			fmt.Fprintf(rw, "  %s\t%s\t%s\t%s\t%s\t%.12s\n", r.Node, r.State, ago(r.Synced), lag(r.Lag), units.BytesSize(float64(r.LagBytes)), r.Root)
		}
		_ = rw.Flush()
		for _, r := range v.Replicas {
			if r.Problem != "" {
				fmt.Fprintf(out, "  %s: %s\n", r.Node, r.Problem)
			}
		}
	}
}

// replicaSummary is how many of the copies a volume keeps are ready: "2/3" counts the
// owner's copy and the replicas ready; "-" for a volume of one copy.
func replicaSummary(v volume.Info) string {
	if v.Copies <= 1 && len(v.Replicas) == 0 {
		return "-"
	}
	ready := 1
	for _, r := range v.Replicas {
		if r.State == volume.ReplicaReady {
			ready++
		}
	}
	return fmt.Sprintf("%d/%d", ready, max(v.Copies, 1))
}

// lag says how far a replica may be behind: "none" for one with every write of the
// volume's last container.
func lag(seconds float64) string {
	if seconds == 0 {
		return "none"
	}
	return (time.Duration(seconds * float64(time.Second))).Round(time.Second).String()
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return units.HumanDuration(time.Since(t)) + " ago"
}
