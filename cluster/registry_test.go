package cluster_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/cluster/embedded"
	"github.com/drayage/drayage/cluster/storetest"
)

// newRegistry gives each test a fresh prefix in an embedded etcd server of its own.
func newRegistry(t *testing.T) (*cluster.Registry, cluster.Store) {
	t.Helper()
	s, err := embedded.Start(context.Background(), embedded.Options{
		Dir:        filepath.Join(t.TempDir(), "store"),
		Name:       "test",
		ClientAddr: fmt.Sprintf("127.0.0.1:%d", storetest.FreePort(t)),
		PeerAddr:   fmt.Sprintf("127.0.0.1:%d", storetest.FreePort(t)),
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return cluster.NewRegistry(s, "test/"), s
}

func lease(t *testing.T, s cluster.Store) cluster.Lease {
	t.Helper()
	l, err := s.Grant(context.Background(), 2*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close(context.Background()) })
	return l
}

func create(t *testing.T, r *cluster.Registry, name, owner string) cluster.Volume {
	t.Helper()
	e, created, err := r.Create(context.Background(), cluster.Volume{Name: name, Owner: owner, Created: time.Now().UTC()})
	require.NoError(t, err)
	require.True(t, created)
	return e.Volume
}
