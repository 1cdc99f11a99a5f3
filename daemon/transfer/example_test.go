package transfer_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"github.com/drayage/drayage/daemon/internal/testpki"
	"github.com/drayage/drayage/daemon/peers"
	"github.com/drayage/drayage/daemon/transfer"
)

// Node node-a sends its volume "db" to node-b over mutual TLS: node-a serves the
// transfer service on its control port and file data on its data port; node-b pulls the
// tree into staging, then installs it in place of its old copy.
func ExamplePull() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "drayage-transfer-example-")
	check(err)
	defer os.RemoveAll(dir)
	// Each node's identity: a certificate from the cluster's CA ('drayage ca').
	ids, err := testpki.Identities(filepath.Join(dir, "pki"), "node-a", "node-b")
	check(err)

	// node-a holds the volume.
	src := filepath.Join(dir, "node-a", "db")
	check(os.MkdirAll(filepath.Join(src, "conf"), 0o755))
	check(os.WriteFile(filepath.Join(src, "conf", "db.ini"), []byte("port = 5432\n"), 0o644))
	check(os.WriteFile(filepath.Join(src, "rows"), bytes.Repeat([]byte("row\n"), 1<<18), 0o600))

	// The sender. Its Authorizer says who may have which volume, at which epoch of the
	// claim on it, and where the volume's files are; in a daemon it asks the cluster store.
	authorize := func(_ context.Context, volume, node string, epoch uint64) (string, error) {
		if volume != "db" || node != "node-b" || epoch != 7 {
			return "", fmt.Errorf("no claim of node %q on volume %q at epoch %d", node, volume, epoch)
		}
		return src, nil
	}
	ctl, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	data, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	log := slog.New(slog.DiscardHandler)
	control := peers.NewServer(ids["node-a"], nil, log)
	sender := transfer.NewServer(ids["node-a"], authorize, data.Addr().String(), log)
	control.Register(sender.ServiceDesc())
	go func() { _ = control.Serve(ctl) }()
	defer control.Stop()
	go func() { _ = sender.ServeData(data) }()
	defer sender.Close() // ends its transfers and waits for everything it started

	// node-b pulls the volume into staging, beside where it goes, then puts it in place
	// in one step.
	volumes := filepath.Join(dir, "node-b")
	check(os.MkdirAll(volumes, 0o755))
	staging, dest := filepath.Join(volumes, "db.staging"), filepath.Join(volumes, "db")
	res, err := transfer.Pull(ctx, transfer.PullOptions{Identity: ids["node-b"], From: "node-a", Control: ctl.Addr().String(),
		Volume: "db", Epoch: 7, Staging: staging})
	check(err)
	check(transfer.Install(staging, dest))

	ini, err := os.ReadFile(filepath.Join(dest, "conf", "db.ini"))
	check(err)
	fmt.Printf("%d entries, %d files, %d bytes sent\n", res.Entries, res.Files, res.Bytes)
	fmt.Printf("%s", ini)
	// Output:
	// 4 entries, 2 files, 1048588 bytes sent
	// port = 5432
}

// check stops the example on an error.
func check(err error) {
	if err != nil {
		panic(err)
	}
}
