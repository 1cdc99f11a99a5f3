package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/drayage/drayage/daemon/control"
	"github.com/drayage/drayage/daemon/volume"
)

func newVolumePromoteCmd(g *globals) *cobra.Command {
	var to string
	var asJSON, acceptLoss bool
	cmd := &cobra.Command{
		Use:   "promote NAME [--to NODE] [--accept-loss]",
		Short: "Make a replica the volume when the node holding it is down (failover)",
		Long: `Make a replica of a replicated volume the volume itself, when the node holding it is
down: gossip says so and its lease in the cluster store lapsed. The replica on --to
(default: the least behind of the live ones) becomes the volume at the next epoch, and
its node holds it from then on.

A container start does this by itself when the freshest replica is within the volume's
max-lag (-o max-lag, DRAYAGE_MAX_LAG). Past it, the start is refused with how far the
replica may be behind; --accept-loss promotes it anyway: what was written on the old
owner after the replica's last sync is not in the promoted volume. Should the old owner
come back with such writes, it keeps them as a new volume NAME-diverged-EPOCH-NODE:
nothing is merged and nothing is dropped.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			return ask(cmd, g, asJSON, func(ctx context.Context, c *control.Client) (volume.PromoteResult, error) {
				return c.PromoteVolume(ctx, name, to, acceptLoss)
			}, printPromoted)
		},
	}
	transferFlags(cmd, g, &to, &asJSON, "the node whose replica becomes the volume (default: the least behind)")
	cmd.Flags().BoolVar(&acceptLoss, "accept-loss", false, "promote the replica even if it is behind more than the volume's max-lag")
	return cmd
}

func printPromoted(out io.Writer, res volume.PromoteResult) error {
	fmt.Fprintf(out, "promoted node %s's replica of volume %s (node %s is down): node %s holds it at epoch %d\n", res.To, res.Volume, res.From, res.To, res.Epoch)
	return nil
}
