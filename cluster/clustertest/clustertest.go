// Package clustertest gives tests a real cluster store: one embedded etcd server per test
// binary, and a fresh key prefix per registry, so tests never see each other's volumes.
// A package whose tests use it runs them through Main, which stops the server and then
// checks that no goroutine was left running.
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
	"go.uber.org/goleak"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/cluster/embedded"
)

var (
	once    sync.Once
	server  *embedded.Store
	dir     string
	errOnce error
	seq     atomic.Int64
)

// Main runs a package's tests (call it from TestMain), stops the shared server if they
// started it, and fails the run if any goroutine is left: every test must stop what it
// started.
func Main(m *testing.M) {
	code := m.Run()
	if server != nil {
		_ = server.Close()
		_ = os.RemoveAll(dir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goroutines left running after the tests: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// Store returns the shared embedded server, starting it on first use. It lives until the
// test binary exits (or Main stops it); its data is in a temporary dir.
func Store(t testing.TB) cluster.Store {
	t.Helper()
	once.Do(func() {
		sweep()
		dir = filepath.Join(os.TempDir(), fmt.Sprintf("drayage-clustertest-%d", os.Getpid()))
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
