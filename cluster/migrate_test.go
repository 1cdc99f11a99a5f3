package cluster_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/protocol"
)

// A store that never had the key is at version 1; a node refuses records newer than it
// speaks or older than it reads, naming itself, both versions and what to do.
func TestANodeRefusesRecordsOfAVersionItDoesNotSpeak(t *testing.T) {
	r, s := newRegistry(t)
	ctx := context.Background()
	got, err := r.CheckSchema(ctx, "node-1", protocol.Range{Oldest: 1, Newest: 1})
	require.NoError(t, err)
	assert.Equal(t, 1, got.Version)

	_, raised, err := r.RaiseSchema(ctx, "node-2", 2, lease(t, s), nil)
	require.NoError(t, err)
	assert.True(t, raised)
	_, err = r.CheckSchema(ctx, "node-1", protocol.Range{Oldest: 1, Newest: 1})
	require.ErrorIs(t, err, cluster.ErrSchemaTooNew)
	assert.Contains(t, err.Error(), `node "node-1" speaks protocol 1, but the cluster store's records are at version 2 (raised by node "node-2" at `)
	assert.Contains(t, err.Error(), `install a release that speaks 2 on node "node-1"`)
	_, err = r.CheckSchema(ctx, "node-3", protocol.Range{Oldest: 3, Newest: 4})
	require.ErrorIs(t, err, cluster.ErrSchemaTooOld)
	assert.Contains(t, err.Error(), `node "node-3" speaks protocol 3-4, but the cluster store's records are at version 2, which this release no longer reads`)
	_, err = r.CheckSchema(ctx, "node-4", protocol.Range{Oldest: 1, Newest: 2})
	require.NoError(t, err)
}

// Nodes that raise the version at once run each step once between them; a store
// already at the version is left as it is.
func TestARaiseRunsEachStepOnce(t *testing.T) {
	r, s := newRegistry(t)
	ctx := context.Background()
	var ran2, ran3 atomic.Int32
	steps := []cluster.Migration{
		{To: 3, What: "three", Run: func(context.Context, cluster.Store, string) error { ran3.Add(1); return nil }},
		{To: 2, What: "two", Run: func(ctx context.Context, st cluster.Store, prefix string) error {
			assert.Equal(t, int32(0), ran3.Load(), "steps run in the order of their versions")
			ran2.Add(1)
			_, err := st.Txn(ctx, nil, []cluster.Op{cluster.Put(prefix+"two", []byte("done"))})
			return err
		}},
		{To: 4, What: "four", Run: func(context.Context, cluster.Store, string) error { t.Error("a step past the target ran"); return nil }},
	}
	var wg sync.WaitGroup
	versions := make(chan int, 4)
	var raisers atomic.Int32
	for _, node := range []string{"node-1", "node-2", "node-3", "node-4"} {
		l := lease(t, s)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				got, raised, err := r.RaiseSchema(ctx, node, 3, l, steps)
				if errors.Is(err, cluster.ErrRaising) {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				assert.NoError(t, err)
				if raised {
					raisers.Add(1)
				}
				versions <- got.Version
				return
			}
		}()
	}
	wg.Wait()
	close(versions)
	for v := range versions {
		assert.Equal(t, 3, v)
	}
	assert.Equal(t, int32(1), raisers.Load(), "one node says it raised the records")
	assert.Equal(t, int32(1), ran2.Load(), "step two ran once")
	assert.Equal(t, int32(1), ran3.Load(), "step three ran once")
	got, err := r.Schema(ctx)
	require.NoError(t, err)
	assert.Equal(t, 3, got.Version)
	assert.NotEmpty(t, got.By)

	_, raised, err := r.RaiseSchema(ctx, "node-1", 2, lease(t, s), steps)
	require.NoError(t, err)
	assert.False(t, raised)
	got, err = r.Schema(ctx)
	require.NoError(t, err)
	assert.Equal(t, 3, got.Version, "a raise to an older version changes nothing")
	assert.Equal(t, int32(1), ran2.Load())
}

// A node whose lease ends while it runs a step writes nothing more: the step's write is
// refused, the version stays, and the next node runs the step again and raises it.
func TestARaiseWhoseLeaseEndedWritesNothing(t *testing.T) {
	r, s := newRegistry(t)
	ctx := context.Background()
	first := lease(t, s)
	var runs atomic.Int32
	steps := []cluster.Migration{{To: 2, What: "mark", Run: func(ctx context.Context, st cluster.Store, prefix string) error {
		if runs.Add(1) == 1 {
			require.NoError(t, first.Close(ctx)) // the first raiser's lease ends mid-step
		}
		_, err := st.Txn(ctx, nil, []cluster.Op{cluster.Put(prefix+"mark", []byte{byte('0' + runs.Load())})})
		return err
	}}}
	_, _, err := r.RaiseSchema(ctx, "node-1", 2, first, steps)
	require.ErrorIs(t, err, cluster.ErrClaimLost)
	assert.Contains(t, err.Error(), `node "node-1": raise the records from version 1 to 2: mark: the raise was no longer this node's`)
	_, err = s.Get(ctx, r.Prefix()+"mark")
	require.ErrorIs(t, err, cluster.ErrNotFound, "the fenced write was refused")
	got, err := r.Schema(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, got.Version)

	got, _, err = r.RaiseSchema(ctx, "node-2", 2, lease(t, s), steps)
	require.NoError(t, err)
	assert.Equal(t, 2, got.Version)
	kv, err := s.Get(ctx, r.Prefix()+"mark")
	require.NoError(t, err)
	assert.Equal(t, "2", string(kv.Value), "the second node ran the step again")
}

// A node that finds the raise held by another is told which node holds it.
func TestARaiseHeldByAnotherNodeIsNamed(t *testing.T) {
	r, s := newRegistry(t)
	ctx := context.Background()
	inStep, release := make(chan struct{}), make(chan struct{})
	steps := []cluster.Migration{{To: 2, What: "slow", Run: func(context.Context, cluster.Store, string) error {
		close(inStep)
		<-release
		return nil
	}}}
	done := make(chan error)
	first := lease(t, s)
	go func() {
		_, _, err := r.RaiseSchema(ctx, "node-1", 2, first, steps)
		done <- err
	}()
	<-inStep
	_, _, err := r.RaiseSchema(ctx, "node-2", 2, lease(t, s), steps)
	close(release)
	require.NoError(t, <-done)
	require.ErrorIs(t, err, cluster.ErrRaising)
	assert.Contains(t, err.Error(), `node "node-1" raises the records from version 1 to 2 since`)
}

// The version record keeps fields a later release wrote.
func TestTheVersionRecordKeepsUnknownFields(t *testing.T) {
	r, s := newRegistry(t)
	ctx := context.Background()
	_, err := s.Txn(ctx, nil, []cluster.Op{cluster.Put(r.Prefix()+"schema", []byte(`{"version":2,"later":"kept"}`))})
	require.NoError(t, err)
	_, _, err = r.RaiseSchema(ctx, "node-1", 3, lease(t, s), nil)
	require.NoError(t, err)
	kv, err := s.Get(ctx, r.Prefix()+"schema")
	require.NoError(t, err)
	var got map[string]any
	require.NoError(t, json.Unmarshal(kv.Value, &got))
	assert.Equal(t, "kept", got["later"])
	assert.InDelta(t, 3, got["version"], 0)
}

// A new cluster started by a release that no longer speaks version 1 starts its records
// at the oldest version it speaks; a store that has nodes already is not new.
func TestANewClusterStartsAtTheOldestVersionItsFirstNodeSpeaks(t *testing.T) {
	r, s := newRegistry(t)
	ctx := context.Background()
	got, err := r.StartSchema(ctx, "node-1", protocol.Range{Oldest: 2, Newest: 3})
	require.NoError(t, err)
	assert.Equal(t, 2, got.Version)
	_, err = r.StartSchema(ctx, "node-2", protocol.Range{Oldest: 1, Newest: 1})
	require.ErrorIs(t, err, cluster.ErrSchemaTooNew)

	for name, used := range map[string]func(*cluster.Registry) error{
		"another node's record": func(r *cluster.Registry) error { return r.PutNode(ctx, cluster.Node{Name: "node-1", Protocol: "1"}) },
		"its own record":        func(r *cluster.Registry) error { return r.PutNode(ctx, cluster.Node{Name: "node-2", Protocol: "1"}) },
		"a volume": func(r *cluster.Registry) error {
			_, _, err := r.Create(ctx, cluster.Volume{Name: "db", Owner: "node-1", Created: time.Now().UTC()})
			return err
		},
	} {
		r2 := cluster.NewRegistry(s, "used-"+strings.ReplaceAll(name, " ", "-")+"/")
		require.NoError(t, used(r2))
		_, err = r2.StartSchema(ctx, "node-2", protocol.Range{Oldest: 2, Newest: 3})
		require.ErrorIs(t, err, cluster.ErrSchemaTooOld, "a store with %s is at version 1: a skipped release is refused, not given an empty version", name)
	}
}
