package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/daemon/control"
	"github.com/drayage/drayage/daemon/volume"
)

type answer struct {
	Name string `json:"name"`
}

// askWith runs ask with a call that answers res and err without asking any daemon, and
// returns what the command printed and the error it ended with.
func askWith(t *testing.T, asJSON bool, res answer, callErr error) (string, error) {
	t.Helper()
	var out bytes.Buffer
	cmd := &cobra.Command{}
	cmd.SetOut(&out)
	cmd.SetContext(context.Background())
	err := ask(cmd, &globals{root: t.TempDir()}, asJSON,
		func(context.Context, *control.Client) (answer, error) { return res, callErr },
		func(w io.Writer, a answer) error {
			if a.Name == "unprintable" {
				return errors.New("cannot print it")
			}
			_, err := fmt.Fprintf(w, "the answer is %s\n", a.Name)
			return err
		})
	return out.String(), err
}

func TestAskPrintsJSONWhenAskedElseText(t *testing.T) {
	out, err := askWith(t, true, answer{Name: "db"}, nil)
	require.NoError(t, err)
	assert.Equal(t, "{\n  \"name\": \"db\"\n}\n", out, "indented JSON, and nothing else")

	out, err = askWith(t, false, answer{Name: "db"}, nil)
	require.NoError(t, err)
	assert.Equal(t, "the answer is db\n", out)
}

func TestAskPrintsNothingWhenTheCallFailsAndKeepsItsError(t *testing.T) {
	refused := fmt.Errorf(`volume "db" on node "node-a": %w`, volume.ErrInUse)
	for _, asJSON := range []bool{true, false} {
		out, err := askWith(t, asJSON, answer{Name: "db"}, refused)
		assert.Empty(t, out, "json=%v", asJSON)
		assert.Same(t, refused, err, "the daemon's error, untouched")
	}
}

func TestAskPrintsWhatAPartialCallDidThenFails(t *testing.T) {
	refused := fmt.Errorf(`volume "nope": %w`, volume.ErrNotFound)
	for asJSON, want := range map[bool]string{true: "{\n  \"name\": \"db\"\n}\n", false: "the answer is db\n"} {
		out, err := askWith(t, asJSON, answer{Name: "db"}, partly(refused))
		assert.Equal(t, want, out, "json=%v", asJSON)
		assert.Same(t, refused, err, "the refusal itself, not its wrapper")
	}
	assert.NoError(t, partly(nil))
}

func TestAskFailsWhenItCannotPrintTheAnswer(t *testing.T) {
	_, err := askWith(t, false, answer{Name: "unprintable"}, nil)
	require.EqualError(t, err, "cannot print it")
}

// A daemon that stops answering in the middle of 'volume rm' stops it, and the volumes
// it removed before are reported all the same.
func TestRmReportsWhatWasRemovedBeforeTheDaemonStopped(t *testing.T) {
	for asJSON, want := range map[bool]string{true: "[\n  {\n    \"volume\": \"a\",\n    \"node\": \"node-a\"\n  }\n]\n", false: "a\n"} {
		root := t.TempDir()
		l, err := net.Listen("unix", filepath.Join(root, control.SocketName))
		require.NoError(t, err)
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_ = l.Close() // answers this request, and no other: the socket is gone
			w.Header().Set("Connection", "close")
			_, _ = io.WriteString(w, `{"volume":"a","node":"node-a"}`)
		})}
		go func() { _ = srv.Serve(l) }()
		t.Cleanup(func() { _ = srv.Close() })

		args := []string{"volume", "rm", "a", "b"}
		if asJSON {
			args = append(args, "--json")
		}
		out, err := run(t, root, args...)
		require.ErrorIs(t, err, control.ErrDaemonUnreachable)
		assert.Equal(t, want, out, "json=%v", asJSON)
	}
}
