package daemon

import (
	"net"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
