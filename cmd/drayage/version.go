package main

import (
	"fmt"
	"io"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/drayage/drayage/protocol"
)

// commit is set at build time with -ldflags "-X main.commit=...".
var commit = "unknown"

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit, Go version and protocol versions",
		Long: `Print this build's version, the commit it was built from, its Go version and platform,
and the protocol versions it speaks with other nodes. Nodes whose protocol ranges meet
work together (a cluster is upgraded one node at a time); 'drayage node ls' marks a
member whose range differs from this node's.`,
		Args: cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			printVersion(cmd.OutOrStdout())
		},
	}
}

func printVersion(out io.Writer) {
	fmt.Fprintf(out, "drayage %s\n", version)
	fmt.Fprintf(out, "commit:   %s\n", commit)
	fmt.Fprintf(out, "go:       %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(out, "protocol: %s\n", protocol.Own())
}
