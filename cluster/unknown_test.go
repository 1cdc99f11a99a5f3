package cluster_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/cluster"
)

// A record a later release wrote, with fields this one does not know, keeps them when a
// node of this release rewrites it.
func TestFieldsOfALaterReleaseAreKept(t *testing.T) {
	ctx := context.Background()
	r, s := newRegistry(t)
	v := create(t, r, "db", "node-a")
	kv, err := s.Get(ctx, "test/volumes/db")
	require.NoError(t, err)
	var raw map[string]any
	require.NoError(t, json.Unmarshal(kv.Value, &raw))
	raw["tier"] = "gold"
	raw["placement"] = map[string]any{"zone": "b", "weight": 3.0}
	b, err := json.Marshal(raw)
	require.NoError(t, err)
	_, err = s.Txn(ctx, nil, []cluster.Op{cluster.Put("test/volumes/db", b)})
	require.NoError(t, err)

	require.NoError(t, r.UpdateSize(ctx, "db", "node-a", v.Epoch, 4096))
	kv, err = s.Get(ctx, "test/volumes/db")
	require.NoError(t, err)
	var after map[string]any
	require.NoError(t, json.Unmarshal(kv.Value, &after))
	assert.Equal(t, "gold", after["tier"], "kept as written")
	assert.Equal(t, map[string]any{"zone": "b", "weight": 3.0}, after["placement"])
	assert.EqualValues(t, 4096, after["size"], "and this release's change made")
	e, err := r.Get(ctx, "db")
	require.NoError(t, err)
	assert.Equal(t, int64(4096), e.Volume.Size)
}

// addField writes key again with one more field, as a later release would.
func addField(t *testing.T, s cluster.Store, key, field string, value any) {
	t.Helper()
	ctx := context.Background()
	kv, err := s.Get(ctx, key)
	require.NoError(t, err)
	var raw map[string]any
	require.NoError(t, json.Unmarshal(kv.Value, &raw))
	raw[field] = value
	b, err := json.Marshal(raw)
	require.NoError(t, err)
	_, err = s.Txn(ctx, nil, []cluster.Op{cluster.Put(key, b)})
	require.NoError(t, err)
}

// field reads one field of the record at key.
func field(t *testing.T, s cluster.Store, key, name string) any {
	t.Helper()
	kv, err := s.Get(context.Background(), key)
	require.NoError(t, err)
	var raw map[string]any
	require.NoError(t, json.Unmarshal(kv.Value, &raw))
	return raw[name]
}

// Claims and replica records keep a later release's fields too, when this release
// rewrites them: a mount claim counting another container, a replica confirmed current.
func TestClaimsAndReplicasKeepFieldsOfALaterRelease(t *testing.T) {
	ctx := context.Background()
	r, s := newRegistry(t)
	v := create(t, r, "db", "node-a")
	l := lease(t, s)
	first, err := r.ClaimMount(ctx, "db", "node-a", l, 1)
	require.NoError(t, err)
	addField(t, s, "test/claims/db", "reason", "later")
	c, err := r.ClaimMount(ctx, "db", "node-a", l, 2)
	require.NoError(t, err)
	assert.Equal(t, 2, c.Mounts)
	assert.Equal(t, "later", field(t, s, "test/claims/db", "reason"), "the claim kept it")
	assert.EqualValues(t, 2, field(t, s, "test/claims/db", "mounts"))
	e, err := r.Get(ctx, "db")
	require.NoError(t, err)
	assert.Equal(t, first.Since, e.Claim.Since, "and when the volume was first mounted")

	at := time.Now().UTC()
	require.NoError(t, r.PutReplica(ctx, cluster.Replica{Volume: "db", Node: "node-b", Epoch: v.Epoch, Root: "abc", Started: at.Add(-time.Minute)}))
	addField(t, s, "test/replicas/db/node-b", "zone", "b")
	nodes, err := r.ConfirmReplicas(ctx, "db", "node-a", v.Epoch, "abc", at)
	require.NoError(t, err)
	assert.Equal(t, []string{"node-b"}, nodes)
	assert.Equal(t, "b", field(t, s, "test/replicas/db/node-b", "zone"), "the replica record kept it")
}
