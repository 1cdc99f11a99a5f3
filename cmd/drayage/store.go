package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
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
	var force bool
	remove := &cobra.Command{
		Use:   "remove NODE",
		Short: "Remove a node's member from the embedded store cluster: for a node gone for good",
		Long: `Remove a node's member from the embedded store cluster, so that the others stop counting
on it and the leader can promote a learner in its place. The member must be down (or
--force), and a majority of the voting members must answer. A removed node that comes back
wipes its stale store data and joins again as a new member.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return ask(cmd, g, false, func(ctx context.Context, c *control.Client) (control.StoreMember, error) {
				return c.RemoveStoreMember(ctx, args[0], force)
			}, func(out io.Writer, m control.StoreMember) error {
				_, err := fmt.Fprintf(out, "removed %s (member %s, %s) from the store cluster\n", m.Name, m.ID, m.Role)
				return err
			})
		},
	}
	remove.Flags().BoolVar(&force, "force", false, "remove the member even though it still answers")
	snapshot := &cobra.Command{
		Use:   "snapshot FILE",
		Short: "Write a consistent snapshot of the embedded store to FILE (restore it with etcdutl snapshot restore)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return ask(cmd, g, false, func(ctx context.Context, c *control.Client) (control.SnapshotResult, error) {
				return c.StoreSnapshot(ctx)
			}, func(out io.Writer, res control.SnapshotResult) error {
				// The daemon wrote it into its state dir, which this command reaches at --root.
				if err := moveFile(filepath.Join(g.root, filepath.Base(res.Path)), args[0]); err != nil {
					return err
				}
				_, err := fmt.Fprintf(out, "wrote %s (%d bytes)\n", args[0], res.Bytes)
				return err
			})
		},
	}
	cmd.AddCommand(ls, remove, snapshot)
	return cmd
}

// moveFile moves from to to, copying when they are on different filesystems.
func moveFile(from, to string) error {
	if err := os.Rename(from, to); err == nil {
		return nil
	}
	in, err := os.Open(from)
	if err != nil {
		return fmt.Errorf("read the snapshot the daemon wrote: %w (is --root the daemon's state dir?)", err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("write %s: %w", to, err)
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Remove(from)
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
