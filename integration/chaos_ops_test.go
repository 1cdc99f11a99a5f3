package integration

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/drayage/drayage/integration/chaos"
)

// The operations of the campaign. Each runs with a deadline and is recorded with its
// outcome; none fails the test by itself: the checker judges what they did.

// opDeadline bounds an operation: a Mount waits for a paused or cut-off node within its
// own budget, but a CLI talking to a paused daemon waits for as long as it is paused.
const opDeadline = 90 * time.Second

// writer appends $COUNT records "$OP.1", "$OP.2", … to /data/log, each made durable
// (fdatasync) before it says "ack RECORD"; first it says what it found: the log's lines
// and how many of them are no record.
const writer = `f=/data/log; echo "found $(cat $f 2>/dev/null | wc -l) $(grep -cvE '^o[0-9]+\.[0-9]+$' $f 2>/dev/null || echo 0)"
i=0; while [ $i -lt $COUNT ]; do i=$((i+1)); echo "$OP.$i" >> $f || exit 3; sync -d $f || exit 4; echo "ack $OP.$i"; sleep 0.05; done`

// do runs one planned operation and records it.
func (c *chaosCluster) do(round int, p chaos.OpPlan) {
	c.mu.Lock()
	c.ops++
	op := &chaos.Op{OpPlan: p, ID: fmt.Sprintf("o%d", c.ops), Round: round, Start: time.Now()}
	c.mu.Unlock()
	defer c.history.Add(op)
	ctx, cancel := context.WithTimeout(context.Background(), opDeadline)
	defer cancel()
	n, target := c.nodes[p.Node], c.nodes[p.Target]
	var out string
	var err error
	switch p.Kind {
	case chaos.OpWrite:
		out, err = c.write(ctx, n, op)
	case chaos.OpMove:
		out, err = cmdOut(ctx, binary, "--root", n.state, "volume", "move", p.Volume, "--to", target.name)
	case chaos.OpCopy:
		name := p.Volume + "-copy-" + op.ID
		out, err = cmdOut(ctx, binary, "--root", n.state, "volume", "copy", p.Volume, name, "--to", target.name)
		c.mu.Lock()
		c.trash = append(c.trash, name)
		c.mu.Unlock()
		if err == nil {
			// A copy is a state the volume was in: read now, checked once the round's
			// writes, some of them still running, are in the history.
			lines, _ := logLines(filepath.Join(dataDir(target, name), "log"))
			c.mu.Lock()
			c.made = append(c.made, madeCopy{volume: p.Volume, copy: &chaos.Copy{Name: name, Node: target.name, Lines: lines}})
			c.mu.Unlock()
		}
	case chaos.OpPromote:
		args := []string{"--root", n.state, "volume", "promote", p.Volume, "--to", target.name}
		if p.AcceptLoss {
			args = append(args, "--accept-loss")
		}
		out, err = cmdOut(ctx, binary, args...)
	case chaos.OpCreate:
		c.mu.Lock()
		c.trash = append(c.trash, p.Volume)
		c.mu.Unlock()
		out, err = cmdOut(ctx, "docker", "-H", n.engine.host, "volume", "create", "--driver", nodePlugin,
			"-o", fmt.Sprintf("replicas=%d", p.Replicas), "-o", "sync-interval=1s", p.Volume)
	case chaos.OpRemove:
		out, err = cmdOut(ctx, "docker", "-H", n.engine.host, "volume", "rm", p.Volume)
	case chaos.OpRestart:
		// One restart of a node's plugin at a time, as an operator does: two cycles of
		// disable and enable racing each other on one engine left it, once, mounting a
		// volume's container on a plain directory (see docs/chaos.md, "Findings").
		c.restarting[p.Node].Lock()
		defer c.restarting[p.Node].Unlock()
		out, err = cmdOut(ctx, "docker", "-H", n.engine.host, "plugin", "disable", "-f", nodePlugin)
		if err == nil {
			out, err = cmdOut(ctx, "docker", "-H", n.engine.host, "plugin", "enable", nodePlugin)
		}
	}
	op.End = time.Now()
	switch {
	case err == nil:
		op.Outcome = chaos.Ok
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		op.Outcome = chaos.Timeout
	default:
		op.Outcome = chaos.Refused
	}
	if err != nil {
		op.Output = shorten(out)
	}
	if p.Kind == chaos.OpWrite && err != nil && !c.stopped(n, op) {
		op.End = time.Time{} // its container may still write: when it stopped is not known
	}
}

// write runs the writer in a container on node n and records its acknowledgements as
// they arrive. The container names the volume's driver, as Swarm and Nomad do: with -v
// NAME alone, a container started while the plugin is disabled (a restart) gets a volume
// the engine makes itself (TestAContainerStartedWhileThePluginIsDisabledIsRefused).
func (c *chaosCluster) write(ctx context.Context, n *node, op *chaos.Op) (string, error) {
	cmd := exec.CommandContext(ctx, "docker", "-H", n.engine.host, "run", "--rm", "--name", "chaos-"+op.ID,
		"--network", "none", "-e", "OP="+op.ID, "-e", "COUNT="+strconv.Itoa(op.Count), "--mount", "type=volume,source="+op.Volume+",target=/data,volume-driver="+nodePlugin, testImage, "sh", "-c", writer)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	if err := cmd.Start(); err != nil {
		return "", err
	}
	lines := bufio.NewScanner(stdout)
	for lines.Scan() {
		line := lines.Text()
		if rec, ok := strings.CutPrefix(line, "ack "); ok {
			op.Acks = append(op.Acks, chaos.Ack{Rec: rec, At: time.Now()})
		} else if f := strings.Fields(line); len(f) == 3 && f[0] == "found" {
			op.Found, _ = strconv.Atoi(f[1])
			op.Bad, _ = strconv.Atoi(f[2])
		}
	}
	err = cmd.Wait()
	return stderr.String(), err
}

// stopped makes sure a write's container is gone, and says whether it is.
func (c *chaosCluster) stopped(n *node, op *chaos.Op) bool {
	out, err := tryRun("docker", "-H", n.engine.host, "rm", "-f", "chaos-"+op.ID)
	return err == nil || strings.Contains(out, "No such container")
}

// cmdOut runs a command within ctx and returns its combined output.
func cmdOut(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// shorten is the start of a command's output, on one line.
func shorten(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// logLines are the lines of a copy's log (none if it has none).
func logLines(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	s := strings.TrimSuffix(string(b), "\n")
	if s == "" {
		return nil, nil
	}
	return strings.Split(s, "\n"), nil
}
