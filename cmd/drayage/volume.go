package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/docker/go-units"
	"github.com/spf13/cobra"

	"github.com/drayage/drayage/daemon/control"
	"github.com/drayage/drayage/daemon/volume"
)

func newVolumeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "volume",
		Short: "List and inspect drayage volumes (talks to the local daemon)",
	}
	cmd.AddCommand(newVolumeLsCmd(g), newVolumeInspectCmd(g), newVolumeMoveCmd(g))
	return cmd
}

func newVolumeMoveCmd(g *globals) *cobra.Command {
	var to string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "move NAME --to NODE",
		Short: "Move a volume of any size to a node (it must not be mounted anywhere)",
		Long: `Move a volume to another node, whatever its size: the node pulls it from the node that
holds it, verified, and becomes its owner. Run it on any node of the cluster. A volume
mounted by containers is refused: stop them first.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if to == "" {
				return errors.New("give the node to move the volume to with --to NODE (see 'drayage node ls')")
			}
			res, err := control.NewClient(g.root).MoveVolume(cmd.Context(), args[0], to)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), res)
			}
			if res.From == res.To {
				fmt.Fprintf(cmd.OutOrStdout(), "volume %s is on node %s already\n", res.Volume, res.To)
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "moved volume %s from node %s to node %s: %s in %s\n",
				res.Volume, res.From, res.To, units.BytesSize(float64(res.Bytes)), res.Took.Round(time.Millisecond))
			return nil
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "the node to move the volume to")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newVolumeLsCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List volumes",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			infos, err := control.NewClient(g.root).ListVolumes(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), infos)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tNODE\tSTATE\tMOUNTS\tCREATED")
			for _, v := range infos {
				fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\n", v.Name, v.Node, v.State, v.Mounts, ago(v.Created))
			}
			return w.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newVolumeInspectCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "inspect NAME [NAME...]",
		Short: "Show volumes in detail",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			client := control.NewClient(g.root)
			infos := make([]volume.Info, 0, len(args))
			for _, name := range args {
				info, err := client.InspectVolume(cmd.Context(), name)
				if err != nil {
					return err
				}
				infos = append(infos, info)
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), infos)
			}
			for i, v := range infos {
				if i > 0 {
					fmt.Fprintln(cmd.OutOrStdout())
				}
				printInfo(cmd.OutOrStdout(), v)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printInfo(out io.Writer, v volume.Info) {
	w := tabwriter.NewWriter(out, 0, 4, 1, ' ', 0)
	fmt.Fprintf(w, "Name:\t%s\n", v.Name)
	fmt.Fprintf(w, "Node:\t%s\n", v.Node)
	fmt.Fprintf(w, "State:\t%s\n", v.State)
	if v.Problem != "" {
		fmt.Fprintf(w, "Problem:\t%s\n", v.Problem)
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
	_ = w.Flush()
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return units.HumanDuration(time.Since(t)) + " ago"
}

func writeJSON(out io.Writer, v any) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
