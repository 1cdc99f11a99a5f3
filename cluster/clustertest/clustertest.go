// Package clustertest gives tests a real cluster store: one embedded etcd server per test
// binary, and a fresh key prefix per registry, so tests never see each other's volumes.
package clustertest

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/cluster/embedded"
)

var (
	once    sync.Once
	server  *embedded.Store
	errOnce error
	seq     atomic.Int64
)

// Store returns the shared embedded server, starting it on first use. It lives until the
// test binary exits; its data is in a temporary dir.
func Store(t testing.TB) cluster.Store {
	t.Helper()
	once.Do(func() {
		sweep()
		dir := filepath.Join(os.TempDir(), fmt.Sprintf("drayage-clustertest-%d", os.Getpid()))
		if err := os.RemoveAll(dir); err != nil {
			errOnce = err
			return
		}
		server, errOnce = embedded.Start(context.Background(), embedded.Options{
			Dir: dir, Name: "clustertest", ClientAddr: freeAddr(), PeerAddr: freeAddr(),
		})
	})
	require.NoError(t, errOnce, "start the embedded store for tests")
	return server
}

// Registry returns a registry under a prefix no other test uses.
func Registry(t testing.TB) *cluster.Registry {
	t.Helper()
	name := strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
	return cluster.NewRegistry(Store(t), fmt.Sprintf("test/%s-%d/", name, seq.Add(1)))
}

// Lease grants a lease on the shared store, closed when the test ends.
func Lease(t testing.TB) cluster.Lease {
	t.Helper()
	l, err := Store(t).Grant(context.Background(), 2*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close(context.Background()) })
	return l
}

// sweep removes the store dirs of earlier test binaries that have exited: the server
// lives as long as its process, so no test can remove its dir.
func sweep() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "drayage-clustertest-*"))
	for _, dir := range dirs {
		pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(dir), "drayage-clustertest-"))
		if err != nil || syscall.Kill(pid, 0) == nil {
			continue
		}
		_ = os.RemoveAll(dir)
	}
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}
