package embedded_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/cluster/embedded"
	"github.com/drayage/drayage/cluster/etcdstore"
	"github.com/drayage/drayage/cluster/storetest"
)

// A member that starts over its data, beside running ones, asks them for the cluster's
// version over HTTP (etcd's cluster_util.go) with a client whose idle keep-alive
// connections etcd never closes; they stay open until their peer goes. That is etcd's,
// bounded by the peers, and only those connections are let go.
func TestMain(m *testing.M) {
	storetest.Main(m,
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreAnyFunction("net/http.(*connReader).abortPendingRead"),
		goleak.IgnoreAnyFunction("net/http.(*connReader).backgroundRead"))
}

func start(t testing.TB, opts embedded.Options) *embedded.Store {
	t.Helper()
	s, err := embedded.Start(context.Background(), opts)
	require.NoError(t, err)
	return s
}

// The conformance suite against the etcd server embedded in this process; other
// clients reach it at its client address, as other nodes would.
func TestConformanceOnEmbeddedServer(t *testing.T) {
	opts := embedded.Options{
		Dir:        filepath.Join(t.TempDir(), "store"),
		Name:       "node-a",
		ClientAddr: fmt.Sprintf("127.0.0.1:%d", storetest.FreePort(t)),
		PeerAddr:   fmt.Sprintf("127.0.0.1:%d", storetest.FreePort(t)),
	}
	server := start(t, opts)
	t.Cleanup(func() { _ = server.Close() })
	storetest.Run(t, storetest.Backend{
		Open: func(t *testing.T) cluster.Store {
			s, err := etcdstore.Open(context.Background(), etcdstore.Options{Endpoints: []string{opts.ClientAddr}})
			require.NoError(t, err)
			return s
		},
		URL:         "etcd://" + opts.ClientAddr,
		LeaseTTL:    2 * time.Second,
		ExpiryBound: 10 * time.Second,
		Restart: func(t *testing.T) {
			require.NoError(t, server.Close())
			server = start(t, opts)
		},
	})
}

func TestDataSurvivesAStopAndStart(t *testing.T) {
	ctx := context.Background()
	opts := embedded.Options{
		Dir:        filepath.Join(t.TempDir(), "store"),
		Name:       "node-a",
		ClientAddr: fmt.Sprintf("127.0.0.1:%d", storetest.FreePort(t)),
		PeerAddr:   fmt.Sprintf("127.0.0.1:%d", storetest.FreePort(t)),
	}
	s := start(t, opts)
	rev, err := s.Txn(ctx, nil, []cluster.Op{cluster.Put("drayage/volumes/v1", []byte("record"))})
	require.NoError(t, err)
	require.NoError(t, s.Close())

	s = start(t, opts)
	defer s.Close()
	kv, err := s.Get(ctx, "drayage/volumes/v1")
	require.NoError(t, err)
	assert.Equal(t, "record", string(kv.Value))
	assert.Equal(t, rev, kv.Rev)
}

func TestStartFailsClearlyWhenThePortIsTaken(t *testing.T) {
	port := storetest.FreePort(t)
	opts := embedded.Options{Dir: filepath.Join(t.TempDir(), "a"), Name: "a",
		ClientAddr: fmt.Sprintf("127.0.0.1:%d", port), PeerAddr: fmt.Sprintf("127.0.0.1:%d", storetest.FreePort(t))}
	s := start(t, opts)
	defer s.Close()
	opts.Dir = filepath.Join(t.TempDir(), "b")
	opts.PeerAddr = fmt.Sprintf("127.0.0.1:%d", storetest.FreePort(t))
	_, err := embedded.Start(context.Background(), opts)
	require.Error(t, err)
	assert.Contains(t, err.Error(), opts.ClientAddr)
}
