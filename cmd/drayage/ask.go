package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"

	"github.com/spf13/cobra"

	"github.com/drayage/drayage/daemon/control"
)

// Every command that talks to the local daemon has one shape, written once here: ask the
// daemon of the state dir (--root) through its control socket, then print the answer,
// for scripts as JSON (--json) or for people as text. The commands differ only in what
// they ask and how they put the answer in words.

// ask runs call against the daemon of g's state dir and prints what it answers on cmd's
// output: as indented JSON if asJSON, else through text.
//
// A call that fails prints nothing, and its error is the command's, untouched (the
// daemon's own words: which volume, which node, what to do). A call that did part of its
// work says so with partly(err): its answer is printed, then the command fails with err.
func ask[T any](cmd *cobra.Command, g *globals, asJSON bool, call func(context.Context, *control.Client) (T, error), text func(io.Writer, T) error) error {
	res, err := call(cmd.Context(), control.NewClient(g.root))
	var part *partial
	if err != nil && !errors.As(err, &part) {
		return err
	}
	out := cmd.OutOrStdout()
	if asJSON {
		err = writeJSON(out, res)
	} else {
		err = text(out, res)
	}
	if err != nil {
		return err
	}
	if part != nil {
		return part.err
	}
	return nil
}

// partial is the error of a call that did part of its work: ask prints that part, then
// fails with err.
type partial struct{ err error }

func (p *partial) Error() string { return p.err.Error() }
func (p *partial) Unwrap() error { return p.err }

// partly marks err as the failure of a call that did part of its work; nil stays nil.
func partly(err error) error {
	if err == nil {
		return nil
	}
	return &partial{err: err}
}

func writeJSON(out io.Writer, v any) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
