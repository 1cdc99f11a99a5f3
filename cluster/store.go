package cluster

import (
	"context"
	"errors"
	"time"
)

// Errors a Store returns; callers tell them apart with errors.Is.
var (
	// ErrNotFound means the key does not exist.
	ErrNotFound = errors.New("key not found")
	// ErrConflict means a transaction's condition did not hold: someone else changed a
	// key since it was read. Read again and decide again.
	ErrConflict = errors.New("changed concurrently")
	// ErrLeaseLost means the lease expired or was revoked, with the keys attached to it.
	ErrLeaseLost = errors.New("lease lost")
	// ErrNoQuorum means the store cannot decide anything: too few of its voting members
	// run and reach each other. Nothing that needs it can succeed until enough return.
	ErrNoQuorum = errors.New("the cluster store has lost its quorum")
)

// ScanPage is how many keys a Scan reads per round trip.
const ScanPage = 10000

// KV is one key read from a store.
type KV struct {
	Key   string
	Value []byte
	// Rev is the key's modification revision (etcd mod revision, Consul ModifyIndex).
	// A transaction conditioned on it succeeds only if nobody wrote the key since.
	Rev int64
}

// Cond is a transaction condition: Key is at revision Rev, or absent when Rev is 0.
type Cond struct {
	Key string
	Rev int64
}

// Absent is the condition that key does not exist.
func Absent(key string) Cond { return Cond{Key: key} }

// Unchanged is the condition that kv has not been written since it was read.
func Unchanged(kv KV) Cond { return Cond{Key: kv.Key, Rev: kv.Rev} }

// Op is a transaction operation: put Value at Key (attached to Lease if set, so it is
// deleted when the lease ends), or delete Key.
type Op struct {
	Key    string
	Value  []byte
	Lease  Lease
	Delete bool
}

// Put writes a key that lives until deleted.
func Put(key string, value []byte) Op { return Op{Key: key, Value: value} }

// PutLeased writes a key that is deleted when lease ends.
func PutLeased(key string, value []byte, lease Lease) Op {
	return Op{Key: key, Value: value, Lease: lease}
}

// Delete deletes a key.
func Delete(key string) Op { return Op{Key: key, Delete: true} }

// Event is one change seen by Watch.
type Event struct {
	Key     string
	Value   []byte // nil for a deletion
	Rev     int64
	Deleted bool
}

// Store is the consistent key-value store holding the cluster's state: etcd, Consul, or
// the embedded etcd server. It is deliberately narrow: what ownership and fencing need.
//
// Reads are linearizable (etcd's default, Consul's consistent mode): a read after a write
// that succeeded sees it, on any node. Implementations are safe for concurrent use and
// retry what is safe to retry (reads; writes that never reached the server).
type Store interface {
	// Get reads one key. It returns ErrNotFound if the key does not exist.
	Get(ctx context.Context, key string) (KV, error)
	// List reads every key under prefix, sorted by key.
	List(ctx context.Context, prefix string) ([]KV, error)
	// Scan calls fn with every key under prefix, sorted by key, as List would return
	// them, but a page at a time (ScanPage keys), so that reading 100,000 records never
	// holds them all at once. The pages are read at one revision where the store
	// allows it (etcd); Consul answers in one response. An error from fn stops the scan
	// and is returned.
	Scan(ctx context.Context, prefix string, fn func(KV) error) error
	// Txn applies ops atomically if every condition holds, and returns the revision the
	// written keys now have. It returns ErrConflict, having changed nothing, if a
	// condition fails, and ErrLeaseLost if an op's lease has ended.
	Txn(ctx context.Context, conds []Cond, ops []Op) (int64, error)
	// Watch reports changes under prefix made after revision afterRev (0: from now on),
	// in order, until ctx ends; then the channel is closed. A consumer that must not miss
	// a change lists the prefix first and watches from the highest revision it saw.
	Watch(ctx context.Context, prefix string, afterRev int64) (<-chan Event, error)
	// Grant creates a lease that the store keeps alive in the background until it is
	// closed or lost. Keys written with it are deleted when it ends.
	Grant(ctx context.Context, ttl time.Duration) (Lease, error)
	// Close releases the client. Leases not closed first expire on their own.
	Close() error
}

// Lease is a time-bound claim on keys (an etcd lease, a Consul session). Modelled on
// etcd's concurrency.Session.
type Lease interface {
	// ID identifies the lease in the store.
	ID() string
	// TTL is how long the lease outlives its holder.
	TTL() time.Duration
	// Done is closed when the lease has ended: expired, revoked or closed.
	Done() <-chan struct{}
	// Close revokes the lease at once, deleting the keys attached to it.
	Close(ctx context.Context) error
}
