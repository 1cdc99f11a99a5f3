package etcdstore_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/cluster/etcdstore"
	"github.com/drayage/drayage/cluster/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// The conformance suite against a real etcd server (Debian's etcd-server).
func TestConformanceOnRealEtcd(t *testing.T) {
	srv := storetest.StartEtcd(t, storetest.ServerOptions{})
	storetest.Run(t, storetest.Backend{
		Open: func(t *testing.T) cluster.Store {
			s, err := etcdstore.Open(context.Background(), etcdstore.Options{Endpoints: strings.Split(srv.Addr, ",")})
			require.NoError(t, err)
			return s
		},
		URL:         srv.URL,
		LeaseTTL:    2 * time.Second,
		ExpiryBound: 10 * time.Second,
		Restart:     func(t *testing.T) { srv.Restart(t) },
	})
}

func TestOpenFailsClearlyWhenNothingAnswers(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", storetest.FreePort(t))
	_, err := etcdstore.Open(context.Background(), etcdstore.Options{Endpoints: []string{addr}, DialTimeout: time.Second})
	require.Error(t, err)
	require.Contains(t, err.Error(), addr)
}
