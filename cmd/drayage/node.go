package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/drayage/drayage/daemon/control"
)

func newNodeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Show the cluster's nodes (talks to the local daemon)",
	}
	var asJSON bool
	ls := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the nodes: address, state, version, protocol, last seen, and whether their control port answers",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return ask(cmd, g, asJSON, func(ctx context.Context, c *control.Client) ([]control.NodeInfo, error) {
				return c.ListNodes(ctx)
			}, printNodes)
		},
	}
	ls.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(ls)
	return cmd
}

// printNodes is 'drayage node ls': a table, a node a line. A member whose protocol range
// is not this node's is marked: it may be refused (its CONTROL column says so).
func printNodes(out io.Writer, nodes []control.NodeInfo) error {
	own := ""
	for _, n := range nodes {
		if n.Self {
			own = n.Protocol
		}
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tADDRESS\tSTATE\tVERSION\tPROTOCOL\tLAST SEEN\tCONTROL")
	for _, n := range nodes {
		name, reach, proto := n.Name, n.Reach, dash(n.Protocol)
		if n.Self {
			name, reach = name+" (this node)", "-"
		}
		if reach == "" {
			reach = "-"
		}
		if own != "" && n.Protocol != "" && n.Protocol != own {
			proto += " (differs from " + own + ")"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, dash(n.Address), n.State, dash(n.Version), proto, ago(n.LastSeen), reach)
	}
	return w.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
