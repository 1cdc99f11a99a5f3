package volume_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/cluster/embedded"
	"github.com/drayage/drayage/daemon/mount/mounttest"
	"github.com/drayage/drayage/daemon/volume"
)

// A node's volume manager over a cluster store: create a volume, mount it for a
// container, see it mounted, unmount it.
func ExampleManager() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "drayage-example-")
	defer os.RemoveAll(dir)

	// The cluster store: here an embedded etcd on loopback; in a daemon, DRAYAGE_STORE.
	store, err := embedded.Start(ctx, embedded.Options{Dir: filepath.Join(dir, "store"), Name: "node-a",
		ClientAddr: freeAddr(), PeerAddr: freeAddr()})
	check(err)
	defer store.Close()
	lease, err := store.Grant(ctx, 5*time.Second) // the node's lease: mount claims live on it
	check(err)
	defer lease.Close(ctx)

	m := volume.NewManager(volume.Config{Node: "node-a", Root: filepath.Join(dir, "state"), MountDir: filepath.Join(dir, "mnt"),
		Mounter: mounttest.New(), Logger: slog.New(slog.DiscardHandler)})
	defer m.Close() // stops the pulls running in the background, and waits for them
	check(m.Init(ctx, cluster.NewRegistry(store, "example/"), lease))

	check(m.Create(ctx, "db", map[string]string{"mode": "0750"}))
	mp, err := m.Mount(ctx, "db", "container-1")
	check(err)
	info, _ := m.Lookup(ctx, "db")
	fmt.Println(info.Node, info.State, info.Mounts, mp == info.Mountpoint)
	check(m.Unmount(ctx, "db", "container-1"))
	info, _ = m.Lookup(ctx, "db")
	fmt.Println(info.Node, info.State, info.Mounts)
	// Output:
	// node-a mounted 1 true
	// node-a idle 0
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	defer l.Close()
	return l.Addr().String()
}

// check stops the example on an error.
func check(err error) {
	if err != nil {
		panic(err)
	}
}
