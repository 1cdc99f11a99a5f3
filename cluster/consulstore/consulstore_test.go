package consulstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/cluster/consulstore"
	"github.com/drayage/drayage/cluster/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// The conformance suite against a real Consul server (built by scripts/build-tools.sh).
func TestConformanceOnRealConsul(t *testing.T) {
	srv := storetest.StartConsul(t, storetest.ServerOptions{})
	storetest.Run(t, storetest.Backend{
		Open: func(t *testing.T) cluster.Store {
			s, err := consulstore.Open(context.Background(), consulstore.Options{Address: srv.Addr})
			require.NoError(t, err)
			return s
		},
		URL:      srv.URL,
		LeaseTTL: consulstore.MinTTL,
		// Consul invalidates a session up to twice its TTL after the last renewal.
		ExpiryBound: 2*consulstore.MinTTL + 10*time.Second,
		Restart:     func(t *testing.T) { srv.Restart(t) },
	})
}

func TestOpenFailsClearlyWhenNothingAnswers(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", storetest.FreePort(t))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := consulstore.Open(ctx, consulstore.Options{Address: addr})
	require.Error(t, err)
	require.Contains(t, err.Error(), addr)
}
