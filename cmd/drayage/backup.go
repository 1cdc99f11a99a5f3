package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/drayage/drayage/daemon/backup"
	"github.com/drayage/drayage/daemon/control"
	"github.com/drayage/drayage/progress"
)

// 'drayage volume backup' and 'drayage backup ls': backups in S3, through the daemon,
// which holds the S3 settings and credentials (DRAYAGE_S3_*).

func newVolumeBackupCmd(g *globals) *cobra.Command {
	var to string
	var keep int
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "backup NAME --to s3://BUCKET/PREFIX/ [--keep N]",
		Short: "Back a volume up to S3, incrementally (only new content is uploaded)",
		Long: `Back a volume up to an S3 location. Run it on any node: the node that holds the volume
does the work, mounted or not (each file is kept as it was at one moment; a file that
changes while it is read is read again). Content is stored once, in chunks named by
their BLAKE3 hash: a backup uploads only what the location lacks, and files unchanged
since the last backup are not even read. Each backup is a snapshot, listed by
'drayage backup ls'; restore one with
  docker volume create -d drayage -o from=s3://BUCKET/PREFIX/[@SNAPSHOT] NAME

Give each volume its own prefix. --keep N then removes all but the newest N snapshots
and the content only they held; a prune cut off at any point loses no snapshot it keeps.
The daemon's DRAYAGE_S3_ENDPOINT, _REGION, _ACCESS_KEY and _SECRET_KEY_FILE say which
S3 and with what credentials.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if to == "" {
				return fmt.Errorf("volume %q: give where to back it up with --to s3://BUCKET/PREFIX/", name)
			}
			return ask(cmd, g, asJSON, func(ctx context.Context, c *control.Client) (backup.Result, error) {
				return withProgress(ctx, progressOut(cmd, asJSON), func(ctx context.Context) (*progress.Transfer, error) { return c.BackupProgress(ctx, name) },
					func(ctx context.Context) (backup.Result, error) {
						return c.BackupVolume(ctx, name, control.BackupRequest{To: to, Keep: keep})
					})
			}, printBackedUp)
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "the backup location, s3://BUCKET/PREFIX/")
	cmd.Flags().IntVar(&keep, "keep", 0, "then keep only the newest N snapshots there (0: keep all)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.ValidArgsFunction = completeVolumes(g, 0)
	return cmd
}

func printBackedUp(out io.Writer, res backup.Result) error {
	s := res.Snapshot
	fmt.Fprintf(out, "backed up volume %s on node %s to %s as snapshot %s: %d files, %s, %s new, in %s\n",
		s.Volume, s.Node, res.Location, s.ID, s.Files, progress.BytesUnit(s.Size), progress.BytesUnit(s.NewBytes), res.Took.Round(time.Millisecond))
	if n := len(res.Changed); n > 0 {
		fmt.Fprintf(out, "%d files changed each time they were read and are kept as last read: %s\n", n, strings.Join(first(res.Changed, 5), ", "))
	}
	if p := res.Pruned; p != nil {
		fmt.Fprintf(out, "pruned %d snapshots and %d objects (%s)\n", len(p.Snapshots), p.Objects, progress.BytesUnit(p.Bytes))
	}
	return nil
}

// first is at most n of s.
func first(s []string, n int) []string { return s[:min(n, len(s))] }

func newBackupCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "List the snapshots of volume backups in S3 (back up with 'drayage volume backup')",
	}
	var asJSON bool
	ls := &cobra.Command{
		Use:     "ls s3://BUCKET/PREFIX/",
		Aliases: []string{"list"},
		Short:   "List the snapshots at a backup location, oldest first",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return ask(cmd, g, asJSON, func(ctx context.Context, c *control.Client) ([]backup.Info, error) {
				return c.ListBackups(ctx, args[0])
			}, printBackups)
		},
	}
	ls.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(ls)
	return cmd
}

// printBackups is 'drayage backup ls': a table, a snapshot a line.
func printBackups(out io.Writer, infos []backup.Info) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "SNAPSHOT\tTIME\tVOLUME\tNODE\tFILES\tSIZE\tNEW")
	for _, s := range infos {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", s.ID, s.Time.Local().Format(time.DateTime), s.Volume, s.Node, s.Files,
			progress.BytesUnit(s.Size), progress.BytesUnit(s.NewBytes))
	}
	return w.Flush()
}
