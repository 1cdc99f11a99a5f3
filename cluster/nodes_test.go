package cluster_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/cluster"
)

// newRegistry gives each test a fresh prefix in an embedded etcd server of its own.

func TestNodesAreRecorded(t *testing.T) {
	ctx := context.Background()
	r, _ := newRegistry(t)
	now := time.Now().UTC().Truncate(time.Second)
	require.NoError(t, r.PutNode(ctx, cluster.Node{Name: "node-b", Addresses: []string{"10.0.0.2"}, LastSeen: now}))
	require.NoError(t, r.PutNode(ctx, cluster.Node{Name: "node-a", LastSeen: now}))
	nodes, err := r.Nodes(ctx)
	require.NoError(t, err)
	require.Len(t, nodes, 2)
	assert.Equal(t, "node-a", nodes[0].Name)
	assert.Equal(t, []string{"10.0.0.2"}, nodes[1].Addresses)
	assert.True(t, now.Equal(nodes[1].LastSeen))

	b, err := r.Node(ctx, "node-b")
	require.NoError(t, err)
	assert.Equal(t, []string{"10.0.0.2"}, b.Addresses)
	_, err = r.Node(ctx, "node-c")
	require.ErrorIs(t, err, cluster.ErrNotFound)
}
