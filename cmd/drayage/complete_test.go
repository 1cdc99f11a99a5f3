package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/daemon/control"
)

func TestCompletionPrintsAScriptForEachShell(t *testing.T) {
	for shell, marker := range map[string]string{
		"bash": "# bash completion V2 for drayage",
		"zsh":  "#compdef drayage",
		"fish": "# fish completion for drayage",
	} {
		out, err := run(t, t.TempDir(), "completion", shell)
		require.NoError(t, err, shell)
		assert.True(t, strings.HasPrefix(out, marker), "%s: %.80q", shell, out)
	}
}

// complete runs the shell's hidden completion request and returns the candidates.
func complete(t *testing.T, root string, args ...string) []string {
	t.Helper()
	out, err := run(t, root, append([]string{"__complete"}, args...)...)
	require.NoError(t, err)
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.HasPrefix(l, "Completion ended") { // the note cobra writes to stderr
			lines = append(lines, l)
		}
	}
	require.NotEmpty(t, lines)
	assert.Equal(t, ":4", lines[len(lines)-1], "no file names offered")
	var names []string
	for _, l := range lines[:len(lines)-1] {
		name, _, _ := strings.Cut(l, "\t")
		names = append(names, name)
	}
	return names
}

func TestVolumeNamesCompleteFromTheDaemon(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	node := serveControl(t, root, fakeNodes{nodes: []control.NodeInfo{{Name: "node-a", State: "alive"}, {Name: "node-b", State: "alive"}}})
	for _, name := range []string{"db", "dbcache", "logs"} {
		require.NoError(t, node.Manager.Create(ctx, name, nil))
	}

	assert.Equal(t, []string{"db", "dbcache", "logs"}, complete(t, root, "volume", "inspect", ""))
	assert.Equal(t, []string{"db", "dbcache"}, complete(t, root, "volume", "rm", "d"))
	assert.Equal(t, []string{"dbcache", "logs"}, complete(t, root, "volume", "rm", "db", ""), "names given are not offered again")
	assert.Equal(t, []string{"logs"}, complete(t, root, "volume", "move", "l"))
	assert.Empty(t, complete(t, root, "volume", "move", "db", ""), "move takes one volume")
	assert.Equal(t, []string{"db", "dbcache", "logs"}, complete(t, root, "volume", "copy", ""))
	assert.Empty(t, complete(t, root, "volume", "copy", "db", ""), "a copy's new name is not completed")

	assert.Equal(t, []string{"node-a", "node-b"}, complete(t, root, "volume", "move", "db", "--to", ""))
	assert.Equal(t, []string{"node-b"}, complete(t, root, "volume", "copy", "db", "db2", "--to", "node-b"))

	// Without --root, DRAYAGE_ROOT names the state dir, as for the commands themselves.
	t.Setenv("DRAYAGE_ROOT", root)
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&bytes.Buffer{})
	cmd.SetArgs([]string{"__complete", "volume", "inspect", "l"})
	require.NoError(t, cmd.Execute())
	assert.Equal(t, "logs\tidle on node-a\n:4\n", out.String())
	assert.Empty(t, complete(t, t.TempDir(), "volume", "inspect", ""), "--root beats DRAYAGE_ROOT")
}

func TestCompletionIsSilentWhenNoDaemonAnswers(t *testing.T) {
	start := time.Now()
	assert.Empty(t, complete(t, t.TempDir(), "volume", "inspect", ""))
	assert.Empty(t, complete(t, t.TempDir(), "volume", "move", "db", "--to", ""))
	assert.Less(t, time.Since(start), time.Second)
}
