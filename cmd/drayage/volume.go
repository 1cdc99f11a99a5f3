package main

import (
	"context"
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
		Short: "List, inspect, move, copy and remove drayage volumes (talks to the local daemon)",
	}
	cmd.AddCommand(newVolumeLsCmd(g), newVolumeInspectCmd(g), newVolumeMoveCmd(g), newVolumeCopyCmd(g), newVolumeRmCmd(g))
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
mounted by containers is refused: stop them first.

On a terminal a progress bar shows the bytes moved, the rate and the time left. If the
command is interrupted the move goes on; 'drayage volume inspect NAME' shows how far it is.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if to == "" {
				return fmt.Errorf("volume %q: give the node to move it to with --to NODE (see 'drayage node ls')", args[0])
			}
			client := control.NewClient(g.root)
			res, err := withProgress(cmd.Context(), resultOut(cmd, asJSON), pollProgress(client, args[0]),
				func(ctx context.Context) (volume.MoveResult, error) { return client.MoveVolume(ctx, args[0], to) })
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
	cmd.ValidArgsFunction = completeVolumes(g, 1)
	_ = cmd.RegisterFlagCompletionFunc("to", completeNodes(g))
	return cmd
}

func newVolumeCopyCmd(g *globals) *cobra.Command {
	var to string
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "copy NAME NEWNAME --to NODE",
		Aliases: []string{"cp"},
		Short:   "Copy a volume into a new volume on a node (the volume must not be mounted)",
		Long: `Copy a volume into a new volume NEWNAME on node NODE, with the same content and options.
The volume stays with the node that holds it, untouched. Run it on any node of the
cluster. The volume must not be mounted while it is copied: stop its containers first;
nothing mounts or moves it until the copy is done. NEWNAME must not exist.

On a terminal a progress bar shows the bytes copied, the rate and the time left. An
interrupted copy stops; run it again and it resumes from what arrived.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if to == "" {
				return fmt.Errorf("volume %q: give the node to copy it to with --to NODE (see 'drayage node ls')", args[0])
			}
			client := control.NewClient(g.root)
			res, err := withProgress(cmd.Context(), resultOut(cmd, asJSON), pollProgress(client, args[0]),
				func(ctx context.Context) (volume.CopyResult, error) {
					return client.CopyVolume(ctx, args[0], args[1], to)
				})
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), res)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "copied volume %s on node %s to volume %s on node %s: %s in %s\n",
				res.Volume, res.From, res.Copy, res.To, units.BytesSize(float64(res.Bytes)), res.Took.Round(time.Millisecond))
			return nil
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "the node to make the new volume on")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.ValidArgsFunction = completeVolumes(g, 1)
	_ = cmd.RegisterFlagCompletionFunc("to", completeNodes(g))
	return cmd
}

// resultOut is where a command that waits for a transfer draws its progress: nowhere if
// it prints JSON (only the result).
func resultOut(cmd *cobra.Command, asJSON bool) io.Writer {
	if asJSON {
		return io.Discard
	}
	return cmd.OutOrStdout()
}

// pollProgress reads the progress of a transfer of the named volume from the local
// daemon (which reads it from the cluster store, wherever the transfer runs).
func pollProgress(client *control.Client, name string) func(context.Context) (*volume.Progress, error) {
	return func(ctx context.Context) (*volume.Progress, error) {
		info, err := client.LookupVolume(ctx, name)
		return info.Progress, err
	}
}

func newVolumeRmCmd(g *globals) *cobra.Command {
	var asJSON, force bool
	cmd := &cobra.Command{
		Use:     "rm NAME [NAME...]",
		Aliases: []string{"remove"},
		Short:   "Remove volumes and their data, wherever they are held",
		Long: `Remove volumes and their data. Run it on any node: the node that holds a volume deletes
its data (at once if it is up, else when it starts again), and the name is free for
everyone at once. A volume mounted by containers is refused: stop and remove them first.
So is a volume mounted on a node that stopped renewing its lease in the cluster store
(down, paused, or cut off from the store): its containers may still be writing. If that
node is gone for good, --force removes the volume anyway; should the node ever come back
with the data, the volume reappears there. Each volume is removed on its own; the
command fails if any of them could not be.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			client := control.NewClient(g.root)
			results := []volume.RemoveResult{}
			var errs []error
			for _, name := range args {
				res, err := client.RemoveVolume(cmd.Context(), name, volume.DeleteOptions{Force: force})
				if errors.Is(err, control.ErrDaemonUnreachable) {
					return err
				}
				if err != nil {
					errs = append(errs, err)
					continue
				}
				results = append(results, res)
				if !asJSON {
					fmt.Fprintln(cmd.OutOrStdout(), name)
				}
			}
			if asJSON {
				if err := writeJSON(cmd.OutOrStdout(), results); err != nil {
					return err
				}
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON: the removed volumes and the nodes that held them")
	cmd.Flags().BoolVar(&force, "force", false, "remove a volume that a node whose lease lapsed still mounts: only for a node gone for good")
	cmd.ValidArgsFunction = completeVolumes(g, 0)
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
		Use:               "inspect NAME [NAME...]",
		Short:             "Show volumes in detail",
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: completeVolumes(g, 0),
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
	if p := v.Progress; p != nil {
		what := "Moving to " + p.To
		if p.Kind == volume.KindCopy {
			what = "Copying to " + p.To + " as " + p.Copy
		}
		fmt.Fprintf(w, "%s:\t%s, %d of %d files, started %s\n", what, p, p.Files, p.TotalFiles, ago(p.Started))
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
