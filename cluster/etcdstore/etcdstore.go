// Package etcdstore is the cluster.Store backend on etcd v3 (go.etcd.io/etcd/client/v3).
// Leases are concurrency.Sessions: the client keeps them alive, and keys written with one
// are deleted by the server when it expires.
package etcdstore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strconv"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"

	"github.com/drayage/drayage/cluster"
)

// Options configures the client.
type Options struct {
	// Endpoints are host:port addresses of the etcd members.
	Endpoints []string
	// TLS, if set, is used for every connection (client certificates, custom CA).
	TLS *tls.Config
	// Username and Password authenticate to an etcd cluster with auth enabled.
	Username, Password string
	// DialTimeout bounds the first connection (default 5s).
	DialTimeout time.Duration
	// AutoSync, if set, is how often the client refreshes its endpoints from the
	// cluster's voting members, so that it follows members added and removed.
	AutoSync time.Duration
	// CheckKey is read at Open to check the connection and the user's permissions; put it
	// under the prefix drayage uses (default "drayage/.check").
	CheckKey string
}

// How often the client pings each member it is connected to, and how long it waits for
// the answer before it stops using the connection.
const (
	keepAliveTime    = 5 * time.Second
	keepAliveTimeout = 2 * time.Second
)

// Store is a cluster.Store on etcd.
type Store struct {
	cli *clientv3.Client
}

var _ cluster.Store = (*Store)(nil)

// Open connects to etcd. It fails if no endpoint answers within the dial timeout.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if len(opts.Endpoints) == 0 {
		return nil, errors.New("etcd: no endpoints")
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 5 * time.Second
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   opts.Endpoints,
		TLS:         opts.TLS,
		Username:    opts.Username,
		Password:    opts.Password,
		DialTimeout: opts.DialTimeout,
		// A member cut off without a reset (a partition, a paused machine) leaves its
		// connection looking ready: requests sent to it would hang until their deadline.
		// Keepalive pings find it within keepAliveTime+keepAliveTimeout, and the client's
		// balancer sends to the other members from then on. etcd refuses pings more often
		// than every 5 s by default (--grpc-keepalive-min-time).
		DialKeepAliveTime:    keepAliveTime,
		DialKeepAliveTimeout: keepAliveTimeout,
		PermitWithoutStream:  true,
		AutoSyncInterval:     opts.AutoSync,
		Context:              context.WithoutCancel(ctx),
		Logger:               zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd %v: %w", opts.Endpoints, err)
	}
	// clientv3.New does not wait for a connection; check one now so a wrong address or
	// credentials fail at start, not on the first volume operation.
	checkCtx, cancel := context.WithTimeout(ctx, opts.DialTimeout)
	defer cancel()
	if opts.CheckKey == "" {
		opts.CheckKey = cluster.DefaultPrefix + ".check"
	}
	if _, err := cli.Get(checkCtx, opts.CheckKey); err != nil {
		_ = cli.Close()
		return nil, fmt.Errorf("etcd %v: %w", opts.Endpoints, err)
	}
	return &Store{cli: cli}, nil
}

// Client exposes the etcd client (for tools and tests).
func (s *Store) Client() *clientv3.Client { return s.cli }

// Get implements cluster.Store.
func (s *Store) Get(ctx context.Context, key string) (cluster.KV, error) {
	resp, err := s.cli.Get(ctx, key)
	if err != nil {
		return cluster.KV{}, fmt.Errorf("etcd get %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return cluster.KV{}, fmt.Errorf("etcd get %s: %w", key, cluster.ErrNotFound)
	}
	kv := resp.Kvs[0]
	return cluster.KV{Key: string(kv.Key), Value: kv.Value, Rev: kv.ModRevision}, nil
}

// List implements cluster.Store.
func (s *Store) List(ctx context.Context, prefix string) ([]cluster.KV, error) {
	resp, err := s.cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, fmt.Errorf("etcd list %s: %w", prefix, err)
	}
	out := make([]cluster.KV, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out = append(out, cluster.KV{Key: string(kv.Key), Value: kv.Value, Rev: kv.ModRevision})
	}
	return out, nil
}

// Scan implements cluster.Store: pages of cluster.ScanPage keys, the later ones read at
// the first one's revision.
func (s *Store) Scan(ctx context.Context, prefix string, fn func(cluster.KV) error) error {
	end := clientv3.GetPrefixRangeEnd(prefix)
	from, rev := prefix, int64(0)
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(cluster.ScanPage),
			clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := s.cli.Get(ctx, from, opts...)
		if err != nil {
			return fmt.Errorf("etcd scan %s: %w", prefix, err)
		}
		rev = resp.Header.Revision
		for _, kv := range resp.Kvs {
			if err := fn(cluster.KV{Key: string(kv.Key), Value: kv.Value, Rev: kv.ModRevision}); err != nil {
				return err
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// Txn implements cluster.Store.
func (s *Store) Txn(ctx context.Context, conds []cluster.Cond, ops []cluster.Op) (int64, error) {
	cmps := make([]clientv3.Cmp, 0, len(conds))
	for _, c := range conds {
		// An absent key has mod revision 0, so one comparison covers both cases.
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(c.Key), "=", c.Rev))
	}
	thens := make([]clientv3.Op, 0, len(ops))
	for _, op := range ops {
		switch {
		case op.Delete:
			thens = append(thens, clientv3.OpDelete(op.Key))
		case op.Lease != nil:
			l, ok := op.Lease.(*lease)
			if !ok {
				return 0, fmt.Errorf("etcd txn: lease %s is not an etcd lease", op.Lease.ID())
			}
			select {
			case <-l.Done():
				return 0, fmt.Errorf("etcd put %s: lease %s: %w", op.Key, l.ID(), cluster.ErrLeaseLost)
			default:
			}
			thens = append(thens, clientv3.OpPut(op.Key, string(op.Value), clientv3.WithLease(l.session.Lease())))
		default:
			thens = append(thens, clientv3.OpPut(op.Key, string(op.Value)))
		}
	}
	resp, err := s.cli.Txn(ctx).If(cmps...).Then(thens...).Commit()
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return 0, fmt.Errorf("etcd txn: %w", cluster.ErrLeaseLost)
	}
	if err != nil {
		return 0, fmt.Errorf("etcd txn: %w", err)
	}
	if !resp.Succeeded {
		return 0, fmt.Errorf("etcd txn: %w", cluster.ErrConflict)
	}
	return resp.Header.Revision, nil
}

// Watch implements cluster.Store.
func (s *Store) Watch(ctx context.Context, prefix string, afterRev int64) (<-chan cluster.Event, error) {
	opts := []clientv3.OpOption{clientv3.WithPrefix()}
	if afterRev > 0 {
		opts = append(opts, clientv3.WithRev(afterRev+1))
	}
	wch := s.cli.Watch(clientv3.WithRequireLeader(ctx), prefix, opts...)
	out := make(chan cluster.Event)
	go func() {
		defer close(out)
		for resp := range wch {
			if resp.Err() != nil {
				return
			}
			for _, ev := range resp.Events {
				e := cluster.Event{Key: string(ev.Kv.Key), Rev: ev.Kv.ModRevision}
				if ev.Type == clientv3.EventTypeDelete {
					e.Deleted = true
				} else {
					e.Value = ev.Kv.Value
				}
				select {
				case out <- e:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

// Grant implements cluster.Store.
func (s *Store) Grant(ctx context.Context, ttl time.Duration) (cluster.Lease, error) {
	secs := int(ttl.Round(time.Second) / time.Second)
	if secs < 2 {
		secs = 2
	}
	session, err := concurrency.NewSession(s.cli, concurrency.WithTTL(secs), concurrency.WithContext(context.WithoutCancel(ctx)))
	if err != nil {
		return nil, fmt.Errorf("etcd grant lease: %w", err)
	}
	return &lease{session: session, ttl: time.Duration(secs) * time.Second}, nil
}

// Close implements cluster.Store.
func (s *Store) Close() error { return s.cli.Close() }

type lease struct {
	session *concurrency.Session
	ttl     time.Duration
}

func (l *lease) ID() string                    { return strconv.FormatInt(int64(l.session.Lease()), 16) }
func (l *lease) TTL() time.Duration            { return l.ttl }
func (l *lease) Done() <-chan struct{}         { return l.session.Done() }
func (l *lease) Close(_ context.Context) error { return l.session.Close() }
