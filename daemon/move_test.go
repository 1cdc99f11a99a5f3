package daemon

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestMoveAndCopyToAnotherNodeNeedTheClusterNetwork(t *testing.T) {
	d := &Daemon{cfg: Config{Name: "node-a"}}
	_, err := d.MoveVolume(context.Background(), "db", "node-b")
	assert.EqualError(t, err, `cannot move volume "db" to node "node-b": node "node-a" runs alone (no certificate in its TLS dir); run the move on node "node-b"`)
	_, err = d.CopyVolume(context.Background(), "db", "db2", "node-b")
	assert.EqualError(t, err, `cannot copy volume "db" to node "node-b": node "node-a" runs alone (no certificate in its TLS dir); run the copy on node "node-b"`)
}
