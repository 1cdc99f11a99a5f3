package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/drayage/drayage/daemon/control"
)

func newStoreCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "store",
		Short: "Show the embedded store cluster (talks to the local daemon)",
	}
	var asJSON bool
	ls := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the embedded store's members: role (voter or learner), leader, addresses, and whether each answers",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return ask(cmd, g, asJSON, func(ctx context.Context, c *control.Client) ([]control.StoreMember, error) {
				return c.StoreMembers(ctx)
			}, printStoreMembers)
		},
	}
	ls.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(ls)
	return cmd
}

// printStoreMembers is 'drayage store ls': a table, a member a line.
func printStoreMembers(out io.Writer, ms []control.StoreMember) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tID\tROLE\tLEADER\tCLIENT\tPEER\tANSWERS")
	for _, m := range ms {
		name := m.Name
		switch {
		case name == "":
			name = "(added, not started)"
		case m.Self:
			name += " (this node)"
		}
		leader, answers := "", "no"
		if m.Leader {
			leader = "yes"
		}
		if m.Reachable {
			answers = "yes"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, m.ID, m.Role, dash(leader),
			dash(strings.Join(m.ClientURLs, ",")), dash(strings.Join(m.PeerURLs, ",")), answers)
	}
	return w.Flush()
}
