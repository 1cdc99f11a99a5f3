package daemon

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/daemon/transfer"
)

func TestPortRangePicksTheFirstFreePorts(t *testing.T) {
	// Take a block of ports and occupy its second one.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	base := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	busy, err := net.Listen("tcp", ":"+strconv.Itoa(base+1))
	if err != nil {
		t.Fatalf("could not occupy port %d for the test: %v", base+1, err)
	}
	defer busy.Close()

	c := Config{Name: "n", PortRange: strconv.Itoa(base) + "-" + strconv.Itoa(base+9)}
	p, err := c.pickPorts()
	require.NoError(t, err)
	assert.Equal(t, base, p.gossip)
	assert.NotEqual(t, base+1, p.control, "a port in use is skipped")
	assert.Greater(t, p.data, p.control)

	c = Config{Name: "n", GossipPort: 1, ControlPort: 2, DataPort: 3}
	p, err = c.pickPorts()
	require.NoError(t, err)
	assert.Equal(t, ports{1, 2, 3}, p, "without a range the configured ports are used")
}

func TestPortRangeMistakesAreExplained(t *testing.T) {
	for _, r := range []string{"7790", "7799-7790", "a-b", "7790-7791", "0-10", "65530-70000"} {
		_, _, err := parsePortRange(r)
		require.Error(t, err, r)
		assert.Contains(t, err.Error(), "LOW-HIGH", r)
	}
	lo, hi, err := parsePortRange("7790-7799")
	require.NoError(t, err)
	assert.Equal(t, []int{7790, 7799}, []int{lo, hi})
}

func TestAdvertiseMustBeAnAddress(t *testing.T) {
	c := Config{Name: "n", Advertise: "node-a.example"}
	_, err := c.advertiseAddr()
	require.ErrorContains(t, err, "not an IP address")
	c.Advertise = "10.1.2.3"
	a, err := c.advertiseAddr()
	require.NoError(t, err)
	assert.Equal(t, "10.1.2.3", a)
}

// The sender's Authorizer refuses a claim the cluster store says is stale or lost; the
// transfer engine counts such a refusal by its own sentinel, and the receiver reads the
// store's words unchanged.
func TestAStaleOrLostClaimIsMarkedForTheTransferEngineWithItsTextKept(t *testing.T) {
	for _, cause := range []error{cluster.ErrStaleEpoch, cluster.ErrClaimLost} {
		err := fmt.Errorf(`node "node-a": volume "db" at epoch 3: %w`, cause)
		marked := markStaleClaim(err)
		assert.ErrorIs(t, marked, transfer.ErrStaleClaim)
		assert.ErrorIs(t, marked, cause, "still the store's error")
		assert.Equal(t, err.Error(), marked.Error())
	}
	other := errors.New(`volume "db" is mounted by 1 container on node "node-a"`)
	assert.Equal(t, other, markStaleClaim(other), "any other refusal is left as it is")
	assert.NoError(t, markStaleClaim(nil))
}

func TestFreeSpaceIsAnnouncedLessOftenInALargerCluster(t *testing.T) {
	assert.Equal(t, time.Minute, announceGap(3))
	assert.Equal(t, time.Minute, announceGap(6))
	assert.Equal(t, 1000*time.Second, announceGap(100))
	assert.Equal(t, 10000*time.Second, announceGap(1000), "1,000 nodes announce once every 10 s between them")
}
