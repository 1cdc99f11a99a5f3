package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/cluster/embedded"
)

// A volume moves from node-a to node-b: node-b claims it, pulls its data (not shown),
// and commits; from then on the epoch fences node-a out.
func ExampleRegistry() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "drayage-example-")
	defer os.RemoveAll(dir)
	// The store: here an embedded etcd on loopback; in a daemon, DRAYAGE_STORE.
	store, err := embedded.Start(ctx, embedded.Options{Dir: filepath.Join(dir, "store"), Name: "example",
		ClientAddr: freeAddr(), PeerAddr: freeAddr()})
	check(err)
	defer store.Close()
	reg := cluster.NewRegistry(store, "example/")

	_, _, err = reg.Create(ctx, cluster.Volume{Name: "db", Owner: "node-a", Created: time.Now()})
	check(err)
	lease, err := store.Grant(ctx, 5*time.Second) // node-b's lease: its claims live on it
	check(err)
	defer lease.Close(ctx)

	claim, from, err := reg.BeginMigration(ctx, "db", "node-b", lease)
	check(err)
	fmt.Printf("node-b pulls %s from %s for epoch %d\n", claim.Volume, from.Owner, claim.Epoch)
	v, mount, err := reg.CommitMigration(ctx, claim, 0, "", lease, 1)
	check(err)
	fmt.Printf("%s is on %s at epoch %d, mounted by %d container(s)\n", v.Name, v.Owner, v.Epoch, mount.Mounts)

	err = reg.UpdateSize(ctx, "db", "node-a", 1, 42) // node-a still thinks it owns db
	fmt.Println("node-a's write refused:", errors.Is(err, cluster.ErrStaleEpoch))
	// Output:
	// node-b pulls db from node-a for epoch 2
	// db is on node-b at epoch 2, mounted by 1 container(s)
	// node-a's write refused: true
}

func check(err error) {
	if err != nil {
		panic(err)
	}
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	defer l.Close()
	return l.Addr().String()
}
