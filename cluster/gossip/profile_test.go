package gossip

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestProfilesSetMemberlistsTimings(t *testing.T) {
	lan, err := memberlistConfig(Config{})
	require.NoError(t, err)
	large, err := memberlistConfig(Config{Profile: ProfileLarge})
	require.NoError(t, err)
	assert.Equal(t, 2*large.ProbeInterval, lan.ProbeInterval, "large probes twice as often")
	assert.Less(t, large.SuspicionMult, lan.SuspicionMult)
	assert.Less(t, large.GossipInterval, lan.GossipInterval)
	assert.Greater(t, large.PushPullInterval, lan.PushPullInterval, "full syncs, which grow with the cluster, less often")

	set, err := memberlistConfig(Config{Profile: ProfileLarge, ProbeInterval: 3 * lan.ProbeInterval})
	require.NoError(t, err)
	assert.Equal(t, 3*lan.ProbeInterval, set.ProbeInterval, "a probe interval given wins over the profile's")

	_, err = ProfileConfig("huge")
	require.ErrorIs(t, err, ErrUnknownProfile)
	assert.Contains(t, Describe(Config{Profile: ProfileLarge}, 1000), "suspect for 3s")
}
