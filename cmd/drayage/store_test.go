package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/cluster/embedded"
	"github.com/drayage/drayage/daemon/control"
)

func TestStoreLsShowsRolesTheLeaderAndMembersNotYetStarted(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, printStoreMembers(&out, []control.StoreMember{
		{Self: true, Member: embedded.Member{Name: "node-a", ID: "a1", Role: "voter", Leader: true, Started: true, Reachable: true,
			ClientURLs: []string{"https://10.0.0.1:7793"}, PeerURLs: []string{"https://10.0.0.1:7794"}}},
		{Member: embedded.Member{Name: "node-b", ID: "b2", Role: "voter", Started: true, ClientURLs: []string{"https://10.0.0.2:7793"}, PeerURLs: []string{"https://10.0.0.2:7794"}}},
		{Member: embedded.Member{ID: "c3", Role: "learner", PeerURLs: []string{"https://10.0.0.3:7794"}}},
	}))
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, 4)
	assert.Regexp(t, `^node-a \(this node\)\s+a1\s+voter\s+yes\s+https://10.0.0.1:7793\s+https://10.0.0.1:7794\s+yes$`, lines[1])
	assert.Regexp(t, `^node-b\s+b2\s+voter\s+-\s+\S+\s+\S+\s+no$`, lines[2])
	assert.Regexp(t, `^\(added, not started\)\s+c3\s+learner\s+-\s+-\s+https://10.0.0.3:7794\s+no$`, lines[3])
}
