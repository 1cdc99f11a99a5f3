package transfer

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/cluster/identity"
	"github.com/drayage/drayage/daemon/internal/testpki"
	"github.com/drayage/drayage/daemon/peers"
)

const helperEnv = "DRAYAGE_TRANSFER_HELPER"

// helperSpec is what a helper process is told.
type helperSpec struct {
	Role    string // "sender" or "receiver"
	PKI     string
	Src     string
	Control string
	Data    string
	Staging string
	Dest    string
	Streams int
}

// runHelper is a sender or receiver in a process of its own, to be killed.
func runHelper(raw string) int {
	var s helperSpec
	if err := json.Unmarshal([]byte(raw), &s); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	fail := func(err error) int { fmt.Fprintln(os.Stderr, s.Role+":", err); return 1 }
	switch s.Role {
	case "sender":
		id, err := identity.Load(filepath.Join(s.PKI, "node-a"), "node-a")
		if err != nil {
			return fail(err)
		}
		auth := func(context.Context, string, string, uint64) (string, error) { return s.Src, nil }
		srv := NewServer(id, auth, s.Data, slog.New(slog.DiscardHandler))
		g := peers.NewServer(id, nil, slog.New(slog.DiscardHandler))
		g.Register(srv.ServiceDesc())
		ctl, err := net.Listen("tcp", s.Control)
		if err != nil {
			return fail(err)
		}
		data, err := net.Listen("tcp", s.Data)
		if err != nil {
			return fail(err)
		}
		go func() { _ = srv.ServeData(data) }()
		fmt.Println("ready")
		_ = g.Serve(ctl)
	case "receiver":
		id, err := identity.Load(filepath.Join(s.PKI, "node-b"), "node-b")
		if err != nil {
			return fail(err)
		}
		// Limited to 150 MB/s so that every kill point lands inside the transfer.
		res, err := Pull(context.Background(), PullOptions{Identity: id, From: "node-a", Control: s.Control,
			Volume: "v", Epoch: 2, Staging: s.Staging, Streams: s.Streams, Wire: Wire{RateLimit: 150e6}})
		if err != nil {
			return fail(err)
		}
		if err := Install(s.Staging, s.Dest); err != nil {
			return fail(err)
		}
		b, _ := json.Marshal(res)
		fmt.Println(string(b))
	}
	return 0
}

type helper struct {
	cmd *exec.Cmd
	out *bufio.Reader
}

func startHelper(t *testing.T, s helperSpec) *helper {
	t.Helper()
	b, err := json.Marshal(s)
	require.NoError(t, err)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+string(b))
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return &helper{cmd: cmd, out: bufio.NewReader(stdout)}
}

func (h *helper) line(t *testing.T) string {
	t.Helper()
	l, err := h.out.ReadString('\n')
	require.NoError(t, err)
	return strings.TrimSpace(l)
}

func (h *helper) kill() {
	_ = h.cmd.Process.Kill()
	_ = h.cmd.Wait()
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

func TestKilledSenderOrReceiverLeavesOldOrNewTreeAndRetryCompletes(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	rng := mrand.New(mrand.NewPCG(seed, seed))
	t.Logf("random kill points from seed %d", seed)
	base := t.TempDir()
	pki := filepath.Join(base, "pki")
	_, err := testpki.Identities(pki, "node-a", "node-b")
	require.NoError(t, err)
	// The source: 60 files of 4 MiB. The destination holds an old version of the volume.
	src, dest, staging := filepath.Join(base, "src"), filepath.Join(base, "dest"), filepath.Join(base, "staging")
	require.NoError(t, os.MkdirAll(src, 0o755))
	buf := make([]byte, 4<<20)
	for i := range 60 {
		_, _ = rand.Read(buf)
		require.NoError(t, os.WriteFile(filepath.Join(src, fmt.Sprintf("f%02d", i)), buf, 0o644))
	}
	require.NoError(t, os.MkdirAll(dest, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dest, "old"), []byte("the old tree"), 0o644))
	oldTree, err := walkEntries(dest)
	require.NoError(t, err)
	newTree, err := walkEntries(src)
	require.NoError(t, err)
	destIsOldOrNew := func(when string) {
		t.Helper()
		got, err := walkEntries(dest)
		require.NoError(t, err)
		if !assert.ObjectsAreEqual(oldTree, got) && !assert.ObjectsAreEqual(newTree, got) {
			t.Fatalf("%s: the destination is neither the old tree nor the new one", when)
		}
	}

	spec := helperSpec{PKI: pki, Src: src, Control: freeAddr(t), Data: freeAddr(t), Staging: staging, Dest: dest, Streams: 4}
	sender := func() *helper {
		s := spec
		s.Role = "sender"
		h := startHelper(t, s)
		require.Equal(t, "ready", h.line(t))
		return h
	}
	receiver := func() *helper { s := spec; s.Role = "receiver"; return startHelper(t, s) }

	// Kill points are amounts staged, not times: a loaded machine starts processes slowly.
	// 16 MiB is in flight at most (4 streams of 4 MiB files), so past it files are whole.
	stagedPast := func(mib int) {
		t.Helper()
		want := int64(mib) << 20
		require.Eventually(t, func() bool { return stagedBytes(staging) >= want }, time.Minute, 5*time.Millisecond,
			"the receiver to stage %d MiB", mib)
	}

	// 1. Kill the sender at a random point.
	snd := sender()
	rcv := receiver()
	first := 20 + rng.IntN(100)
	stagedPast(first)
	snd.kill()
	require.Error(t, rcv.cmd.Wait(), "the receiver fails when its sender dies")
	destIsOldOrNew("after the sender was killed")

	// 2. Kill the receiver at a random point of the retry.
	snd = sender()
	rcv = receiver()
	stagedPast(int(stagedBytes(staging)>>20) + 20 + rng.IntN(60))
	rcv.kill()
	destIsOldOrNew("after the receiver was killed")

	// 3. The next retry completes, verifies, and reuses what arrived verified before.
	rcv = receiver()
	var res PullResult
	require.NoError(t, json.Unmarshal([]byte(rcv.line(t)), &res))
	require.NoError(t, rcv.cmd.Wait())
	got, err := walkEntries(dest)
	require.NoError(t, err)
	assert.Equal(t, newTree, got, "the retry installs the complete new tree")
	for i := range 60 {
		a, _ := os.ReadFile(filepath.Join(src, fmt.Sprintf("f%02d", i)))
		b, _ := os.ReadFile(filepath.Join(dest, fmt.Sprintf("f%02d", i)))
		require.Equal(t, a, b)
	}
	t.Logf("the final attempt sent %d of %d files (%d MiB of %d MiB): the rest was verified in staging already",
		res.Files, 60, res.Bytes>>20, res.Total>>20)
	assert.Less(t, res.Files, 60, "files verified by the killed attempts are not sent again")
	snd.kill()
}

// stagedBytes is the size of the files under dir, whole or partly received.
func stagedBytes(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}
