package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/drayage/drayage/daemon/control"
	"github.com/drayage/drayage/progress"
)

func newStatusCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show this node, the cluster store's health, the members, the volumes held here and the transfers running",
		Long: `Show the local daemon's status: this node (name, version, addresses, uptime); the cluster
store (kind, addresses, and how long a read of this node's record took, or why it failed);
the cluster's members as gossip sees them; how many volumes this node holds, by state; and
the transfers running through this node, in (pulled here) or out (sent from here), with
their progress.

The command exits 0 whenever the daemon answers, even if the store does not: check
"store.ok" in the --json output in scripts.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return ask(cmd, g, asJSON, func(ctx context.Context, c *control.Client) (control.Status, error) {
				return c.Status(ctx)
			}, func(out io.Writer, s control.Status) error {
				return printStatus(out, s, time.Now())
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// printStatus renders a status for people: a block of facts, then the members and the
// transfers as tables.
func printStatus(out io.Writer, s control.Status, now time.Time) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	n := s.Node
	fmt.Fprintf(w, "Node:\t%s (version %s, up %s)\n", n.Name, dash(n.Version), uptime(time.Duration(n.UptimeSeconds)*time.Second))
	if n.Gossip == "" {
		fmt.Fprintf(w, "Addresses:\tnone: this node runs alone (no certificate in its TLS dir)\n")
	} else {
		fmt.Fprintf(w, "Addresses:\tgossip %s, control %s, data %s (cluster %s)\n", n.Gossip, dash(n.Control), dash(n.Data), dash(n.Cluster))
	}
	fmt.Fprintf(w, "State dir:\t%s\n", n.Root)
	fmt.Fprintf(w, "Store:\t%s\n", storeLine(s.Store))
	fmt.Fprintf(w, "Volumes:\t%s\n", volumesLine(s.Volumes))
	fmt.Fprintf(w, "Transfers:\t%d running\n", len(s.Transfers))
	for _, warning := range s.Warnings {
		fmt.Fprintf(w, "Warning:\t%s\n", warning)
	}
	if err := w.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(out)
	w = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "MEMBER\tADDRESS\tSTATE\tVERSION\tLAST SEEN")
	for _, m := range s.Members {
		name, seen := m.Name, agoFrom(now, m.LastSeen)
		if m.Self {
			name, seen = name+" (this node)", "-"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", name, dash(m.Address), m.State, dash(m.Version), seen)
	}
	if err := w.Flush(); err != nil {
		return err
	}

	if len(s.Transfers) == 0 {
		return nil
	}
	fmt.Fprintln(out)
	w = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "VOLUME\tDIRECTION\tPEER\tKIND\tPROGRESS\tRATE\tSTARTED\tTRANSFER")
	for _, t := range s.Transfers {
		kind := dash(t.Kind)
		if t.Copy != "" {
			kind += " as " + t.Copy
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s/s\t%s\t%s\n", t.Volume, t.Direction, t.Peer, kind, transferAmount(t),
			progress.BytesUnit(t.Rate()), agoFrom(now, t.Started), dash(t.ID))
	}
	return w.Flush()
}

// storeLine says what the store is and how it answered: "etcd 10.0.0.9:2379 (prefix
// drayage/): ok, read in 1.5ms".
func storeLine(st control.StoreStatus) string {
	what := dash(st.Kind)
	if len(st.Endpoints) > 0 {
		what += " " + strings.Join(st.Endpoints, ",")
	}
	what += " (prefix " + st.Prefix + ")"
	if q := st.Quorum; q != nil {
		what += ", this node a " + st.Role
		if q.OK {
			what += fmt.Sprintf(", %d voters, leader %s", len(q.Voters), q.Leader)
		} else {
			what += fmt.Sprintf(", NO QUORUM: no leader among its %d voters (%s)", len(q.Voters), strings.Join(q.Voters, ", "))
		}
	}
	if !st.OK {
		return what + ": NOT OK: " + st.Error
	}
	what = fmt.Sprintf("%s: ok, read in %s", what, time.Duration(st.LatencyMS*float64(time.Millisecond)).Round(10*time.Microsecond))
	if st.Records > 0 {
		what += fmt.Sprintf(", records at protocol %d", st.Records)
	}
	return what
}

// volumesLine counts the volumes held here: "3 held here: 2 idle, 1 mounted".
func volumesLine(c control.VolumeCounts) string {
	s := fmt.Sprintf("%d held here", c.Total)
	if c.Total == 0 {
		return s
	}
	parts := make([]string, 0, len(c.ByState))
	for _, state := range slices.Sorted(maps.Keys(c.ByState)) {
		parts = append(parts, fmt.Sprintf("%d %s", c.ByState[state], state))
	}
	return s + ": " + strings.Join(parts, ", ")
}

// transferAmount says how far a transfer has come: "41%, 2.1 of 5.0 GiB", or for a
// transfer out whose total is not known yet, what was sent.
func transferAmount(t control.TransferStatus) string {
	if t.Total == 0 && t.Direction == control.DirectionOut {
		return progress.BytesUnit(t.Bytes) + " sent"
	}
	return t.Amount()
}

// uptime renders a duration compactly: "3d4h", "2h5m", "4m10s", "9s".
func uptime(d time.Duration) string {
	d = d.Round(time.Second)
	days, hours, mins, secs := int(d/(24*time.Hour)), int(d/time.Hour)%24, int(d/time.Minute)%60, int(d/time.Second)%60
	switch {
	case days > 0:
		return fmt.Sprintf("%dd%dh", days, hours)
	case hours > 0:
		return fmt.Sprintf("%dh%dm", hours, mins)
	case mins > 0:
		return fmt.Sprintf("%dm%ds", mins, secs)
	}
	return fmt.Sprintf("%ds", secs)
}

// agoFrom is how long before now t was: "5s ago", "-" if t is unset.
func agoFrom(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return uptime(max(0, now.Sub(t))) + " ago"
}
