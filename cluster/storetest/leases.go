package storetest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/cluster/backends"
)

// Leases: a closed lease takes its keys with it; a holder killed with -9 loses them
// within the backend's expiry bound; the suite runs the holder as a separate process
// (holdLease).

func testLeaseClose(t *testing.T, b Backend, s cluster.Store, p string) {
	ctx := ctxT(t)
	lease, err := s.Grant(ctx, b.LeaseTTL)
	require.NoError(t, err)
	k := p + "leased"
	_, err = s.Txn(ctx, []cluster.Cond{cluster.Absent(k)}, []cluster.Op{cluster.PutLeased(k, []byte("mine"), lease)})
	require.NoError(t, err)

	// The lease is kept alive past its TTL while its holder lives.
	time.Sleep(lease.TTL() + time.Second)
	_, err = s.Get(ctx, k)
	require.NoError(t, err, "a live lease keeps its keys")

	require.NoError(t, lease.Close(ctx))
	select {
	case <-lease.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("Done not closed after Close")
	}
	_, err = s.Get(ctx, k)
	require.ErrorIs(t, err, cluster.ErrNotFound, "revoking the lease deletes its keys")

	_, err = s.Txn(ctx, nil, []cluster.Op{cluster.PutLeased(k, []byte("late"), lease)})
	require.ErrorIs(t, err, cluster.ErrLeaseLost, "a closed lease can't hold keys")
	_, err = s.Get(ctx, k)
	require.ErrorIs(t, err, cluster.ErrNotFound)
}

func testLeaseExpiry(t *testing.T, b Backend, s cluster.Store, p string) {
	require.NotEmpty(t, b.URL, "Backend.URL: the lease holder runs in a separate process")
	ctx := ctxT(t)
	k := p + "held"
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+strings.Join([]string{b.URL, k, b.LeaseTTL.String()}, "|"))
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err, "the lease holder did not report")
	require.Equal(t, "holding\n", line)

	kv, err := s.Get(ctx, k)
	require.NoError(t, err)
	assert.Equal(t, "held", string(kv.Value))

	require.NoError(t, cmd.Process.Signal(os.Kill))
	killed := time.Now()
	deadline := killed.Add(b.ExpiryBound)
	for {
		_, err := s.Get(ctx, k)
		if errors.Is(err, cluster.ErrNotFound) {
			break
		}
		require.NoError(t, err)
		require.True(t, time.Now().Before(deadline), "the key of a killed holder outlived %s", b.ExpiryBound)
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("lease of the killed holder expired %s after SIGKILL (TTL %s)", time.Since(killed).Round(100*time.Millisecond), b.LeaseTTL)
	// The key is free for someone else now.
	_, err = s.Txn(ctx, []cluster.Cond{cluster.Absent(k)}, []cluster.Op{cluster.Put(k, []byte("next"))})
	require.NoError(t, err)
}

// holdLease is the separate process of testLeaseExpiry: it writes a key on a lease,
// reports, and waits to be killed.
func holdLease(spec string) {
	parts := strings.Split(spec, "|")
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "lease holder:", err)
		os.Exit(2)
	}
	if len(parts) != 3 {
		fail(fmt.Errorf("bad spec %q", spec))
	}
	ttl, err := time.ParseDuration(parts[2])
	if err != nil {
		fail(err)
	}
	ctx := context.Background()
	s, err := backends.Open(ctx, backends.Config{URL: parts[0]})
	if err != nil {
		fail(err)
	}
	lease, err := s.Grant(ctx, ttl)
	if err != nil {
		fail(err)
	}
	if _, err := s.Txn(ctx, nil, []cluster.Op{cluster.PutLeased(parts[1], []byte("held"), lease)}); err != nil {
		fail(err)
	}
	fmt.Println("holding")
	<-lease.Done()
	fail(errors.New("lease ended before the holder was killed"))
}
