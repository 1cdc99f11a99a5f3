package main

import (
	"context"
	"errors"

	"github.com/spf13/cobra"

	"github.com/drayage/drayage/daemon/control"
	"github.com/drayage/drayage/daemon/volume"
)

func newVolumeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "volume",
		Short: "List, inspect, move, copy, promote, back up and remove drayage volumes (talks to the local daemon)",
	}
	cmd.AddCommand(newVolumeLsCmd(g), newVolumeInspectCmd(g), newVolumeMoveCmd(g), newVolumeCopyCmd(g), newVolumePromoteCmd(g), newVolumeBackupCmd(g), newVolumeRmCmd(g))
	return cmd
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
			return ask(cmd, g, asJSON, func(ctx context.Context, c *control.Client) ([]volume.RemoveResult, error) {
				return removeEach(ctx, c, args, volume.DeleteOptions{Force: force})
			}, printRemoved)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON: the removed volumes and the nodes that held them")
	cmd.Flags().BoolVar(&force, "force", false, "remove a volume that a node whose lease lapsed still mounts: only for a node gone for good")
	cmd.ValidArgsFunction = completeVolumes(g, 0)
	return cmd
}

// removeEach removes each named volume on its own: one the daemon refuses does not stop
// the others, and the error, partly, names every refusal. A daemon that stops answering
// stops it; what it removed before is still reported.
func removeEach(ctx context.Context, c *control.Client, names []string, o volume.DeleteOptions) ([]volume.RemoveResult, error) {
	removed := []volume.RemoveResult{}
	var errs []error
	for _, name := range names {
		res, err := c.RemoveVolume(ctx, name, o)
		if errors.Is(err, control.ErrDaemonUnreachable) {
			if len(removed) == 0 {
				return nil, err
			}
			return removed, partly(err)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, res)
	}
	return removed, partly(errors.Join(errs...))
}

func newVolumeLsCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List volumes",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return ask(cmd, g, asJSON, func(ctx context.Context, c *control.Client) ([]volume.Info, error) {
				return c.ListVolumes(ctx)
			}, printVolumes)
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
			return ask(cmd, g, asJSON, func(ctx context.Context, c *control.Client) ([]volume.Info, error) {
				infos := make([]volume.Info, 0, len(args))
				for _, name := range args {
					info, err := c.InspectVolume(ctx, name)
					if err != nil {
						return nil, err
					}
					infos = append(infos, info)
				}
				return infos, nil
			}, printInfos)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
