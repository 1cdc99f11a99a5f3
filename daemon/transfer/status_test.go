package transfer

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/daemon/peers"
)

// syncBuffer is a bytes.Buffer safe for the sender's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestSendingListsOpenTransfersAndItsLogLinesNameTheTransferAndThePeer(t *testing.T) {
	ctx := context.Background()
	ids := testIdentities(t, "node-a", "node-b")
	var logs syncBuffer
	ctl, srv := serveVolumeLogging(t, ids["node-a"], fidelityTree(t), slog.New(slog.NewJSONHandler(&logs, nil)))
	assert.Empty(t, srv.Sending())

	// A transfer opened and not finished is listed.
	conn, err := peers.Dial(ids["node-b"], "node-a", ctl)
	require.NoError(t, err)
	defer conn.Close()
	var open openResponse
	require.NoError(t, conn.Invoke(ctx, "/drayage.Transfer/Open", &openRequest{Volume: "v", Epoch: 2}, &open))
	sending := srv.Sending()
	require.Len(t, sending, 1)
	assert.Equal(t, open.Transfer, sending[0].ID)
	assert.Equal(t, "v", sending[0].Volume)
	assert.Equal(t, "node-b", sending[0].Peer)
	assert.Zero(t, sending[0].Bytes)
	require.NoError(t, conn.Invoke(ctx, "/drayage.Transfer/Finish", &finishRequest{Transfer: open.Transfer, Abort: true}, &empty{}))
	assert.Empty(t, srv.Sending(), "a finished transfer is not listed")

	// A whole pull: the receiver learns the transfer's ID, which the sender's lines carry.
	res, err := Pull(ctx, PullOptions{Identity: ids["node-b"], From: "node-a", Control: ctl, Volume: "v", Epoch: 2,
		Staging: filepath.Join(t.TempDir(), "staging")})
	require.NoError(t, err)
	require.NotEmpty(t, res.Transfer)
	assert.Empty(t, srv.Sending())

	var ids2 []string
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &rec), line)
		assert.Equal(t, "v", rec["volume"], line)
		assert.Equal(t, "node-b", rec["peer"], line)
		require.IsType(t, "", rec["transfer"], line)
		ids2 = append(ids2, rec["transfer"].(string))
	}
	assert.Equal(t, []string{open.Transfer, open.Transfer, res.Transfer, res.Transfer}, ids2,
		"sending and aborted, then sending and sent")
}
