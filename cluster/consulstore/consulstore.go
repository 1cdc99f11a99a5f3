// Package consulstore is the cluster.Store backend on Consul's KV store
// (github.com/hashicorp/consul/api). Reads are consistent; transactions use /v1/txn with
// check-index and check-not-exists; leases are sessions with Behavior=delete, renewed in
// the background, so keys written with one vanish when it is invalidated. Consul
// invalidates a session up to twice its TTL after the last renewal, and TTLs are at least
// 10 s.
package consulstore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/drayage/drayage/cluster"
)

// MinTTL is the shortest session TTL Consul accepts.
const MinTTL = 10 * time.Second

// Options configures the client.
type Options struct {
	// Address is host:port of the Consul agent's HTTP API.
	Address string
	// TLS, if set, switches to HTTPS with this configuration.
	TLS *tls.Config
	// Token is the ACL token.
	Token string
	// CheckKey is read at Open to check the connection and the token's permissions; put
	// it under the prefix drayage uses (default "drayage/.check").
	CheckKey string
}

// Store is a cluster.Store on Consul.
type Store struct {
	client *api.Client
	addr   string
	closed chan struct{}
	once   sync.Once
}

var _ cluster.Store = (*Store)(nil)

// Open connects to Consul and checks that it answers and has a leader.
func Open(ctx context.Context, opts Options) (*Store, error) {
	cfg := api.DefaultNonPooledConfig()
	cfg.Address = opts.Address
	cfg.Token = opts.Token
	if opts.TLS != nil {
		cfg.Scheme = "https"
		cfg.Transport.TLSClientConfig = opts.TLS
	}
	client, err := api.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("consul %s: %w", opts.Address, err)
	}
	s := &Store{client: client, addr: opts.Address, closed: make(chan struct{})}
	// A single-key read: Consul refuses it without ACL permission (a list would just come
	// back filtered), so a missing token fails here, at start.
	checkCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if opts.CheckKey == "" {
		opts.CheckKey = cluster.DefaultPrefix + ".check"
	}
	if _, err := s.Get(checkCtx, opts.CheckKey); err != nil && !errors.Is(err, cluster.ErrNotFound) {
		return nil, err
	}
	return s, nil
}

// Client exposes the Consul client (for tools and tests).
func (s *Store) Client() *api.Client { return s.client }

func (s *Store) query(ctx context.Context) *api.QueryOptions {
	return (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx)
}

// Get implements cluster.Store.
func (s *Store) Get(ctx context.Context, key string) (cluster.KV, error) {
	var pair *api.KVPair
	err := s.retry(ctx, func() (err error) {
		pair, _, err = s.client.KV().Get(key, s.query(ctx))
		return err
	})
	if err != nil {
		return cluster.KV{}, fmt.Errorf("consul %s get %s: %w", s.addr, key, err)
	}
	if pair == nil {
		return cluster.KV{}, fmt.Errorf("consul get %s: %w", key, cluster.ErrNotFound)
	}
	return toKV(pair), nil
}

// List implements cluster.Store.
func (s *Store) List(ctx context.Context, prefix string) ([]cluster.KV, error) {
	var pairs api.KVPairs
	err := s.retry(ctx, func() (err error) {
		pairs, _, err = s.client.KV().List(prefix, s.query(ctx))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("consul %s list %s: %w", s.addr, prefix, err)
	}
	out := make([]cluster.KV, 0, len(pairs))
	for _, p := range pairs {
		out = append(out, toKV(p))
	}
	return out, nil // Consul returns keys sorted
}

// Scan implements cluster.Store. Consul lists a prefix in one response only.
func (s *Store) Scan(ctx context.Context, prefix string, fn func(cluster.KV) error) error {
	kvs, err := s.List(ctx, prefix)
	if err != nil {
		return err
	}
	for _, kv := range kvs {
		if err := fn(kv); err != nil {
			return err
		}
	}
	return nil
}

// Txn implements cluster.Store.
func (s *Store) Txn(ctx context.Context, conds []cluster.Cond, ops []cluster.Op) (int64, error) {
	txn := make(api.TxnOps, 0, len(conds)+len(ops))
	for _, c := range conds {
		op := &api.KVTxnOp{Verb: api.KVCheckNotExists, Key: c.Key}
		if c.Rev != 0 {
			op = &api.KVTxnOp{Verb: api.KVCheckIndex, Key: c.Key, Index: uint64(c.Rev)}
		}
		txn = append(txn, &api.TxnOp{KV: op})
	}
	for _, o := range ops {
		op := &api.KVTxnOp{Verb: api.KVSet, Key: o.Key, Value: o.Value}
		switch {
		case o.Delete:
			op = &api.KVTxnOp{Verb: api.KVDelete, Key: o.Key}
		case o.Lease != nil:
			l, ok := o.Lease.(*session)
			if !ok {
				return 0, fmt.Errorf("consul txn: lease %s is not a Consul session", o.Lease.ID())
			}
			select {
			case <-l.Done():
				return 0, fmt.Errorf("consul put %s: session %s: %w", o.Key, l.id, cluster.ErrLeaseLost)
			default:
			}
			op = &api.KVTxnOp{Verb: api.KVLock, Key: o.Key, Value: o.Value, Session: l.id}
		}
		txn = append(txn, &api.TxnOp{KV: op})
	}
	var (
		ok   bool
		resp *api.TxnResponse
	)
	// Retried only when the request cannot have been applied.
	err := s.retry(ctx, func() (err error) {
		ok, resp, _, err = s.client.Txn().Txn(txn, (&api.QueryOptions{}).WithContext(ctx))
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("consul %s txn: %w", s.addr, err)
	}
	if !ok {
		whats := make([]string, 0, len(resp.Errors))
		for _, e := range resp.Errors {
			whats = append(whats, e.What)
		}
		what := strings.Join(whats, "; ")
		if strings.Contains(what, "session") {
			return 0, fmt.Errorf("consul txn (%s): %w", what, cluster.ErrLeaseLost)
		}
		return 0, fmt.Errorf("consul txn (%s): %w", what, cluster.ErrConflict)
	}
	var rev int64
	for _, r := range resp.Results {
		if r.KV != nil && int64(r.KV.ModifyIndex) > rev {
			rev = int64(r.KV.ModifyIndex)
		}
	}
	return rev, nil
}

// Watch implements cluster.Store with blocking queries. Keys changed after afterRev and
// still present are reported first; deletions are seen from the moment Watch is called.
func (s *Store) Watch(ctx context.Context, prefix string, afterRev int64) (<-chan cluster.Event, error) {
	pairs, meta, err := s.client.KV().List(prefix, s.query(ctx))
	if err != nil {
		return nil, fmt.Errorf("consul %s watch %s: %w", s.addr, prefix, err)
	}
	out := make(chan cluster.Event)
	go func() {
		defer close(out)
		prev := map[string]*api.KVPair{}
		var first []cluster.Event
		for _, p := range pairs {
			prev[p.Key] = p
			if afterRev > 0 && int64(p.ModifyIndex) > afterRev {
				first = append(first, cluster.Event{Key: p.Key, Value: p.Value, Rev: int64(p.ModifyIndex)})
			}
		}
		if !send(ctx, out, first) {
			return
		}
		index := meta.LastIndex
		for ctx.Err() == nil {
			q := s.query(ctx)
			q.WaitIndex, q.WaitTime = index, 5*time.Minute
			pairs, meta, err := s.client.KV().List(prefix, q)
			if err != nil {
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
				continue
			}
			if meta.LastIndex < index {
				index = 0 // the index went backwards (e.g. a restored snapshot): start over
				continue
			}
			index = meta.LastIndex
			events, next := diff(prev, pairs, int64(meta.LastIndex))
			prev = next
			if !send(ctx, out, events) {
				return
			}
		}
	}()
	return out, nil
}

// diff returns the events that turn prev into now, and now as a map.
func diff(prev map[string]*api.KVPair, now api.KVPairs, rev int64) ([]cluster.Event, map[string]*api.KVPair) {
	next := make(map[string]*api.KVPair, len(now))
	var events []cluster.Event
	for _, p := range now {
		next[p.Key] = p
		if old, ok := prev[p.Key]; !ok || old.ModifyIndex != p.ModifyIndex {
			events = append(events, cluster.Event{Key: p.Key, Value: p.Value, Rev: int64(p.ModifyIndex)})
		}
	}
	for k := range prev {
		if _, ok := next[k]; !ok {
			events = append(events, cluster.Event{Key: k, Rev: rev, Deleted: true})
		}
	}
	return events, next
}

func send(ctx context.Context, out chan<- cluster.Event, events []cluster.Event) bool {
	for _, e := range events {
		select {
		case out <- e:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// Grant implements cluster.Store with a session. TTLs below MinTTL are raised to it.
func (s *Store) Grant(ctx context.Context, ttl time.Duration) (cluster.Lease, error) {
	if ttl < MinTTL {
		ttl = MinTTL
	}
	ttlStr := strconv.Itoa(int(ttl/time.Second)) + "s"
	var id string
	err := s.retry(ctx, func() (err error) {
		id, _, err = s.client.Session().Create(&api.SessionEntry{
			Name:     "drayage",
			TTL:      ttlStr,
			Behavior: api.SessionBehaviorDelete,
			// Let a key freed by an expired session be claimed again at once.
			LockDelay: time.Millisecond,
		}, (&api.WriteOptions{}).WithContext(ctx))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("consul %s create session: %w", s.addr, err)
	}
	l := &session{store: s, id: id, ttl: ttl, stop: make(chan struct{}), done: make(chan struct{})}
	go l.renew(ttlStr)
	return l, nil
}

// Close implements cluster.Store.
func (s *Store) Close() error {
	s.once.Do(func() { close(s.closed) })
	return nil
}

type session struct {
	store     *Store
	id        string
	ttl       time.Duration
	stop      chan struct{} // closed by Close: destroy the session
	done      chan struct{} // closed when the session has ended
	closeOnce sync.Once
}

func (l *session) ID() string            { return l.id }
func (l *session) TTL() time.Duration    { return l.ttl }
func (l *session) Done() <-chan struct{} { return l.done }

// renew keeps the session alive until it is closed, the store is closed, or Consul says
// it has expired.
func (l *session) renew(ttl string) {
	defer close(l.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-l.store.closed:
			cancel() // the client is going away: stop renewing, let the session expire
		case <-l.done:
		}
	}()
	_ = l.store.client.Session().RenewPeriodic(ttl, l.id, (&api.WriteOptions{}).WithContext(ctx), l.stop)
}

// Close destroys the session, deleting its keys, and waits for the renewer to stop.
func (l *session) Close(ctx context.Context) error {
	l.closeOnce.Do(func() { close(l.stop) })
	select {
	case <-l.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	// RenewPeriodic destroys the session on stop, ignoring errors; make sure.
	_, err := l.store.client.Session().Destroy(l.id, (&api.WriteOptions{}).WithContext(ctx))
	return err
}

func toKV(p *api.KVPair) cluster.KV {
	return cluster.KV{Key: p.Key, Value: p.Value, Rev: int64(p.ModifyIndex)}
}

// retry runs fn until it succeeds, fails with an error that is not transient, or ctx
// ends. Transient errors are those where the request cannot have been applied: the
// connection was refused, or the servers have no leader yet.
func (s *Store) retry(ctx context.Context, fn func() error) error {
	backoff := 100 * time.Millisecond
	for {
		err := fn()
		if err == nil || !transient(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

func transient(err error) bool {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "No cluster leader") ||
		strings.Contains(msg, strconv.Itoa(http.StatusServiceUnavailable)) ||
		strings.Contains(msg, "rpc error making call: EOF")
}
