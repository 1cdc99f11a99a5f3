package volume

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/daemon/mount"
)

// A managed plugin whose propagated mount no longer reaches the engine: a Mount is
// refused, saying what to do, and leaves no bind and no claim; once it reaches the
// engine again, the same Mount succeeds.
func TestAMountTheEngineWouldNotSeeIsRefused(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.propagated = true
	m := f.start(t)
	require.NoError(t, m.Create(ctx, "v", nil))
	f.mounter.Unpropagate(fmt.Errorf("%w: no other mount namespace shows the bind", mount.ErrNotPropagated))

	_, err := m.Mount(ctx, "v", "c1")
	require.ErrorIs(t, err, mount.ErrNotPropagated)
	assert.Contains(t, err.Error(), `volume "v" on node "node-a"`)
	assert.Contains(t, err.Error(), "restart the plugin")
	info, err := m.Get(ctx, "v")
	require.NoError(t, err)
	assert.Equal(t, 0, info.Mounts)
	bound, err := f.mounter.Mounted(filepath.Join(f.mountDir, "v"))
	require.NoError(t, err)
	assert.False(t, bound)
	e, err := f.reg.Get(ctx, "v")
	require.NoError(t, err)
	assert.Nil(t, e.Claim, "no claim is left")
	assert.Nil(t, e.Mark)

	f.mounter.Unpropagate(nil)
	_, err = m.Mount(ctx, "v", "c1")
	require.NoError(t, err)
}
