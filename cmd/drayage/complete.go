package main

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/drayage/drayage/daemon/control"
)

// Shell completion: cobra's 'drayage completion bash|zsh|fish|powershell' prints the
// script; the functions here complete volume and node names by asking the local daemon.
// They answer nothing, at once, when no daemon answers: a shell must never hang on TAB.

// completeTimeout bounds what a TAB may wait for the daemon.
const completeTimeout = 2 * time.Second

// completionClient is the control client for the state dir the command line names
// (--root, else DRAYAGE_ROOT, else the default): completion runs no PersistentPreRunE.
func completionClient(cmd *cobra.Command, g *globals) *control.Client {
	_ = applyEnv(cmd)
	return control.NewClient(g.root)
}

// completeVolumes completes volume names: the first maxArgs arguments (0: every one),
// leaving out names already given.
func completeVolumes(g *globals, maxArgs int) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if maxArgs > 0 && len(args) >= maxArgs {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), completeTimeout)
		defer cancel()
		infos, err := completionClient(cmd, g).ListVolumes(ctx)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []cobra.Completion
		for _, v := range infos {
			if strings.HasPrefix(v.Name, toComplete) && !slices.Contains(args, v.Name) {
				out = append(out, cobra.CompletionWithDesc(v.Name, v.State+" on "+v.Node))
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// completeNodes completes node names (for --to).
func completeNodes(g *globals) cobra.CompletionFunc {
	return func(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		ctx, cancel := context.WithTimeout(cmd.Context(), completeTimeout)
		defer cancel()
		nodes, err := completionClient(cmd, g).Roster(ctx)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []cobra.Completion
		for _, n := range nodes {
			if strings.HasPrefix(n.Name, toComplete) {
				out = append(out, cobra.CompletionWithDesc(n.Name, n.State))
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}
