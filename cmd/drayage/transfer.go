package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/docker/go-units"
	"github.com/spf13/cobra"

	"github.com/drayage/drayage/daemon/control"
	"github.com/drayage/drayage/daemon/volume"
	"github.com/drayage/drayage/progress"
)

// 'drayage volume move' and 'copy' ask the daemon for a transfer and wait for it, with a
// progress bar on a terminal.

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
			name := args[0]
			if to == "" {
				return fmt.Errorf("volume %q: give the node to move it to with --to NODE (see 'drayage node ls')", name)
			}
			return ask(cmd, g, asJSON, watched(progressOut(cmd, asJSON), name,
				func(ctx context.Context, c *control.Client) (volume.MoveResult, error) {
					return c.MoveVolume(ctx, name, to)
				}), printMoved)
		},
	}
	transferFlags(cmd, g, &to, &asJSON, "the node to move the volume to")
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
			name, newName := args[0], args[1]
			if to == "" {
				return fmt.Errorf("volume %q: give the node to copy it to with --to NODE (see 'drayage node ls')", name)
			}
			return ask(cmd, g, asJSON, watched(progressOut(cmd, asJSON), name,
				func(ctx context.Context, c *control.Client) (volume.CopyResult, error) {
					return c.CopyVolume(ctx, name, newName, to)
				}), printCopied)
		},
	}
	transferFlags(cmd, g, &to, &asJSON, "the node to make the new volume on")
	return cmd
}

// transferFlags gives a transfer command --to (completed with the cluster's nodes) and
// --json, and completes its first argument with the volumes.
func transferFlags(cmd *cobra.Command, g *globals, to *string, asJSON *bool, toUsage string) {
	cmd.Flags().StringVar(to, "to", "", toUsage)
	cmd.Flags().BoolVar(asJSON, "json", false, "print JSON")
	cmd.ValidArgsFunction = completeVolumes(g, 1)
	_ = cmd.RegisterFlagCompletionFunc("to", completeNodes(g))
}

func printMoved(out io.Writer, res volume.MoveResult) error {
	if res.From == res.To {
		fmt.Fprintf(out, "volume %s is on node %s already\n", res.Volume, res.To)
		return nil
	}
	fmt.Fprintf(out, "moved volume %s from node %s to node %s: %s in %s\n",
		res.Volume, res.From, res.To, units.BytesSize(float64(res.Bytes)), res.Took.Round(time.Millisecond))
	return nil
}

func printCopied(out io.Writer, res volume.CopyResult) error {
	fmt.Fprintf(out, "copied volume %s on node %s to volume %s on node %s: %s in %s\n",
		res.Volume, res.From, res.Copy, res.To, units.BytesSize(float64(res.Bytes)), res.Took.Round(time.Millisecond))
	return nil
}

// watched is call, with the progress of the named volume's transfer drawn on out while
// it waits (if out is a terminal).
func watched[T any](out io.Writer, name string, call func(context.Context, *control.Client) (T, error)) func(context.Context, *control.Client) (T, error) {
	return func(ctx context.Context, c *control.Client) (T, error) {
		return withProgress(ctx, out, pollProgress(c, name), func(ctx context.Context) (T, error) { return call(ctx, c) })
	}
}

// progressOut is where a command that waits for a transfer draws its progress: nowhere
// if it prints JSON (only the result).
func progressOut(cmd *cobra.Command, asJSON bool) io.Writer {
	if asJSON {
		return io.Discard
	}
	return cmd.OutOrStdout()
}

// pollProgress reads the progress of a transfer of the named volume from the local
// daemon (which reads it from the cluster store, wherever the transfer runs).
func pollProgress(client *control.Client, name string) func(context.Context) (*progress.Transfer, error) {
	return func(ctx context.Context) (*progress.Transfer, error) {
		info, err := client.LookupVolume(ctx, name)
		return info.Progress, err
	}
}
