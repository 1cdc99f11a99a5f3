package cluster_test

import (
	"context"
	"encoding/json"
	"testing"

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
