package volume

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/progress"
)

func TestCopyMakesANewVolumeThereAndLeavesTheSourceWithItsOwner(t *testing.T) {
	ctx := context.Background()
	a, b, fa, fb, _ := twoNodes(t)
	require.NoError(t, a.Create(ctx, "db", map[string]string{"uid": "5"}))
	require.NoError(t, os.WriteFile(filepath.Join(fa.root, "volumes", "db", "data", "table"), []byte("rows"), 0o644))

	res, err := b.Copy(ctx, "db", "db2")
	require.NoError(t, err)
	assert.Equal(t, CopyResult{Volume: "db", Copy: "db2", From: "node-a", To: "node-b", Bytes: 4, Took: res.Took}, res)
	got, err := os.ReadFile(filepath.Join(fb.root, "volumes", "db2", "data", "table"))
	require.NoError(t, err)
	assert.Equal(t, "rows", string(got))
	info, err := a.Get(ctx, "db2")
	require.NoError(t, err)
	assert.Equal(t, "node-b", info.Node)
	assert.Equal(t, map[string]string{"uid": "5"}, info.Options)
	assert.Equal(t, uint64(1), info.Epoch)
	info, err = b.Get(ctx, "db")
	require.NoError(t, err)
	assert.Equal(t, "node-a", info.Node)
	assert.Equal(t, StateIdle, info.State, "the copy claim is gone")
	assert.Equal(t, uint64(1), info.Epoch)
	assert.FileExists(t, filepath.Join(fa.root, "volumes", "db", "data", "table"))

	// On the owner itself too.
	_, err = a.Copy(ctx, "db", "db3")
	require.NoError(t, err)
	assert.FileExists(t, filepath.Join(fa.root, "volumes", "db3", "data", "table"))
	_, err = a.Mount(ctx, "db", "c1")
	require.NoError(t, err, "the source is free again")
}

func TestCopyRefusesAMountedSourceAndATakenName(t *testing.T) {
	ctx := context.Background()
	a, b, _, fb, _ := twoNodes(t)
	require.NoError(t, a.Create(ctx, "db", nil))
	require.NoError(t, b.Create(ctx, "logs", nil))

	_, err := b.Copy(ctx, "db", "logs")
	require.ErrorIs(t, err, ErrExists)
	assert.Equal(t, `volume "logs" exists already, on node "node-b"; choose another name, or remove it first with 'drayage volume rm logs'`, err.Error())
	_, err = b.Copy(ctx, "db", "db")
	require.ErrorIs(t, err, ErrExists)
	_, err = b.Copy(ctx, "db", "../x")
	require.ErrorIs(t, err, ErrInvalidName)
	_, err = b.Copy(ctx, "nope", "x")
	require.ErrorIs(t, err, ErrNotFound)

	_, err = a.Mount(ctx, "db", "c1")
	require.NoError(t, err)
	_, err = b.Copy(ctx, "db", "db2")
	require.ErrorIs(t, err, ErrInUse)
	assert.Equal(t, `volume "db" is mounted on node "node-a" by 1 container; stop it there, then copy it`, err.Error())
	assert.NoDirExists(t, filepath.Join(fb.root, "volumes", "db2"))
}

func TestSourceIsNeitherMountedNorMovedWhileItIsCopied(t *testing.T) {
	ctx := context.Background()
	a, b, fa, fb, p, g := pulling(t)
	fc := newNode(t, "node-c", fa.reg)
	c := fc.start(t)
	p.managers["node-c"] = c
	c.SetPuller(p)

	done := make(chan error, 1)
	go func() { _, err := b.Copy(ctx, "db", "db2"); done <- err }()
	<-g.started

	info, err := c.Get(ctx, "db")
	require.NoError(t, err)
	assert.Equal(t, cluster.StateCopying, info.State)
	require.NotNil(t, info.Progress)
	assert.Equal(t, progress.KindCopy, info.Progress.Kind)
	assert.Equal(t, "db2", info.Progress.Copy)
	assert.Equal(t, "node-b", info.Progress.To)
	assert.Equal(t, 41, info.Progress.Percent())

	const busy = `volume "db" is being copied to node "node-b" right now; retry when it is done`
	_, err = a.Mount(ctx, "db", "c1")
	require.ErrorIs(t, err, ErrInUse)
	assert.Equal(t, busy, err.Error(), "not on its owner")
	_, err = c.Mount(ctx, "db", "c1")
	require.ErrorIs(t, err, ErrInUse)
	assert.Equal(t, busy, err.Error(), "not elsewhere")
	_, err = c.Move(ctx, "db")
	require.ErrorIs(t, err, ErrInUse)
	err = c.Remove(ctx, "db")
	require.ErrorIs(t, err, ErrInUse)
	_, err = c.Copy(ctx, "db", "db3")
	require.ErrorIs(t, err, ErrInUse)

	g.open <- nil
	require.NoError(t, <-done)
	assert.FileExists(t, filepath.Join(fb.root, "volumes", "db2", "data", "table"))
	_, err = a.Mount(ctx, "db", "c1")
	require.NoError(t, err)
}

func TestFailedCopyLeavesNothingBehind(t *testing.T) {
	ctx := context.Background()
	a, b, fa, fb, _, g := pulling(t)

	done := make(chan error, 1)
	go func() { _, err := b.Copy(ctx, "db", "db2"); done <- err }()
	<-g.started
	g.open <- errors.New("connection reset")
	err := <-done
	require.Error(t, err)
	assert.Equal(t, `volume "db": copying it from node "node-a" failed: connection reset; it is untouched there, and a retry resumes from what arrived`, err.Error())
	e, err := fa.reg.Get(ctx, "db")
	require.NoError(t, err)
	assert.Nil(t, e.Claim, "the copy claim was released")

	// The name is taken while the copy runs: the copy is not recorded, nor kept.
	go func() { _, err := b.Copy(ctx, "db", "db2"); done <- err }()
	<-g.started
	require.NoError(t, a.Create(ctx, "db2", nil))
	g.open <- nil
	err = <-done
	require.ErrorIs(t, err, ErrExists)
	assert.Contains(t, err.Error(), `volume "db2" exists already, on node "node-a"`)
	assert.NoDirExists(t, filepath.Join(fb.root, "volumes", "db2"))
	e, err = fa.reg.Get(ctx, "db")
	require.NoError(t, err)
	assert.Nil(t, e.Claim)
}

func TestACopyWhoseCallerLeavesGoesOnAndARetryJoinsIt(t *testing.T) {
	ctx := context.Background()
	_, b, fa, fb, _, g := pulling(t)
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	_, err := b.Copy(short, "db", "db2")
	require.ErrorIs(t, err, ErrPulling)
	assert.Contains(t, err.Error(), "41%, 2.1 of 5.0 GiB")
	<-g.started
	require.Len(t, b.Receiving(), 1, "the copy runs on")

	done := make(chan error, 1)
	go func() { _, err := b.Copy(ctx, "db", "db2"); done <- err }()
	time.Sleep(100 * time.Millisecond)
	g.open <- nil
	require.NoError(t, <-done)
	assert.Empty(t, g.started, "one pull for both calls")
	assert.FileExists(t, filepath.Join(fb.root, "volumes", "db2", "data", "table"))
	e, err := fa.reg.Get(ctx, "db")
	require.NoError(t, err)
	assert.Nil(t, e.Claim, "the copy claim ended with the copy")
}

func TestClosingTheManagerStopsACopyAndReleasesTheSource(t *testing.T) {
	ctx := context.Background()
	_, b, fa, fb, _, g := pulling(t)
	done := make(chan error, 1)
	go func() { _, err := b.Copy(ctx, "db", "db2"); done <- err }()
	<-g.started

	closed := make(chan struct{})
	go func() { b.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not stop the copy")
	}
	require.Error(t, <-done)
	e, err := fa.reg.Get(ctx, "db")
	require.NoError(t, err)
	assert.Nil(t, e.Claim, "the copy claim was released")
	assert.NoDirExists(t, filepath.Join(fb.root, "volumes", "db2"))
}
