package control

import (
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/daemon/volume"
)

// The requests each Client method sends, byte for byte: old CLIs talk to new daemons and
// new CLIs to old ones, so these never change.
func TestClientRequestsStayTheSameOnTheWire(t *testing.T) {
	root := t.TempDir()
	l, err := net.Listen("unix", filepath.Join(root, SocketName))
	require.NoError(t, err)
	var mu sync.Mutex
	var got []string
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, r.Method+" "+r.URL.RequestURI()+" "+string(body))
		mu.Unlock()
		_, _ = io.WriteString(w, "null")
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })

	ctx, c := context.Background(), NewClient(root)
	for _, call := range []func() error{
		func() error { _, err := c.ListVolumes(ctx); return err },
		func() error { _, err := c.InspectVolume(ctx, "my vol"); return err },
		func() error { _, err := c.LookupVolume(ctx, "db"); return err },
		func() error { _, err := c.RemoveVolume(ctx, "db", volume.DeleteOptions{}); return err },
		func() error { _, err := c.RemoveVolume(ctx, "db", volume.DeleteOptions{Force: true}); return err },
		func() error { _, err := c.MoveVolume(ctx, "db", "node-b"); return err },
		func() error { _, err := c.CopyVolume(ctx, "db", "db2", "node-b"); return err },
		func() error { _, err := c.ListNodes(ctx); return err },
		func() error { _, err := c.Roster(ctx); return err },
		func() error { _, err := c.Status(ctx); return err },
	} {
		require.NoError(t, call())
	}
	assert.Equal(t, []string{
		"GET /v1/volumes ",
		"GET /v1/volumes/my%20vol ",
		"GET /v1/volumes/db?size=false ",
		"DELETE /v1/volumes/db ",
		"DELETE /v1/volumes/db?force=true ",
		`POST /v1/volumes/db/move {"to":"node-b"}`,
		`POST /v1/volumes/db/copy {"name":"db2","to":"node-b"}`,
		"GET /v1/nodes ",
		"GET /v1/nodes?reach=false ",
		"GET /v1/status ",
	}, got)
}
