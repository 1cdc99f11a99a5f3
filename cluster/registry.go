package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Errors of volume ownership; callers tell them apart with errors.Is.
var (
	// ErrVolumeNotFound means no volume of that name exists in the cluster.
	ErrVolumeNotFound = errors.New("no such volume in the cluster")
	// ErrInUse means the volume is mounted on a node.
	ErrInUse = errors.New("volume in use")
	// ErrMigrating means the volume is moving to another node.
	ErrMigrating = errors.New("volume is migrating")
	// ErrNotOwner means the node does not hold the volume.
	ErrNotOwner = errors.New("volume is held by another node")
	// ErrStaleEpoch means a write carried an epoch older than the record's: ownership
	// changed since the writer last looked. It is refused.
	ErrStaleEpoch = errors.New("stale epoch")
	// ErrClaimLost means a claim expired (its lease ended) or was replaced.
	ErrClaimLost = errors.New("claim lost")
	// ErrRemoving means the volume is being removed.
	ErrRemoving = errors.New("volume is being removed")
	// ErrVolumeExists means a volume of that name exists already.
	ErrVolumeExists = errors.New("volume exists")
)

// DefaultPrefix is where drayage keeps its keys in the store.
const DefaultPrefix = "drayage/"

// Registry keeps volume records (volumes.go, removal.go), claims (claims.go), mount
// marks (mountmark.go), node records (nodes.go) and transfer progress (progress.go) in a
// Store. It is safe for concurrent use; every change is a transaction conditioned on
// what was read (change).
type Registry struct {
	store  Store
	prefix string
}

// NewRegistry returns a Registry over store, keeping its keys under prefix
// (DefaultPrefix if empty).
func NewRegistry(store Store, prefix string) *Registry {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return &Registry{store: store, prefix: prefix}
}

// Prefix is where the registry keeps its keys; the key layout is in the package doc.
func (r *Registry) Prefix() string { return r.prefix }

func (r *Registry) volumeKey(name string) string   { return r.prefix + "volumes/" + name }
func (r *Registry) claimKey(name string) string    { return r.prefix + "claims/" + name }
func (r *Registry) markKey(name string) string     { return r.prefix + "mounted/" + name }
func (r *Registry) nodeKey(name string) string     { return r.prefix + "nodes/" + name }
func (r *Registry) progressKey(name string) string { return r.prefix + "progress/" + name }

// volumesPrefix, claimsPrefix and marksPrefix are the prefixes of the keys above: a
// volume's name is what follows them.
func (r *Registry) volumesPrefix() string { return r.prefix + "volumes/" }
func (r *Registry) claimsPrefix() string  { return r.prefix + "claims/" }
func (r *Registry) marksPrefix() string   { return r.prefix + "mounted/" }

// txn is one decided change: it is written only if every condition still holds.
type txn struct {
	conds []Cond
	ops   []Op
}

// errUnchanged, returned by a decide function, means there is nothing to write.
var errUnchanged = errors.New("nothing to change")

// change is how the registry changes a volume: read its record and claim, decide what
// to write (or refuse), and write it in one transaction conditioned on what was read.
// When the store reports a conflict (someone changed the record, the claim or the mark
// in between), conflict says whether to give up (a non-nil error) or to read and decide
// again (nil); a nil conflict always tries again. It returns the revision written at,
// and the entry the decision was made from.
func (r *Registry) change(ctx context.Context, name string, decide func(Entry) (txn, error), conflict func() error) (int64, Entry, error) {
	return r.changeFrom(ctx, name, nil, decide, conflict)
}

// changeFrom is change with the entry its caller has just read, if not nil: the first
// decision is made from it, and only a conflict (it was no longer current) reads again.
// The write is conditioned on its revisions as on any read, so a stale entry costs a
// round trip, never a wrong write.
func (r *Registry) changeFrom(ctx context.Context, name string, read *Entry, decide func(Entry) (txn, error), conflict func() error) (int64, Entry, error) {
	for {
		var e Entry
		var err error
		if read != nil {
			e, read = *read, nil
		} else if e, err = r.Get(ctx, name); err != nil {
			return 0, e, err
		}
		t, err := decide(e)
		if errors.Is(err, errUnchanged) {
			return e.Volume.Rev, e, nil
		}
		if err != nil {
			return 0, e, err
		}
		rev, err := r.store.Txn(ctx, t.conds, t.ops)
		if !errors.Is(err, ErrConflict) {
			return rev, e, err
		}
		if conflict != nil {
			if err := conflict(); err != nil {
				return 0, e, err
			}
		}
	}
}

// read gets the record at key and decodes it into a new T. It returns ErrNotFound if
// there is none.
func read[T any](ctx context.Context, s Store, key, what string) (*T, int64, error) {
	kv, err := s.Get(ctx, key)
	if err != nil {
		return nil, 0, err
	}
	v, err := decode[T](kv, what)
	return v, kv.Rev, err
}

// readAll lists the records under prefix, decoded, keyed by what follows the prefix.
func readAll[T any](ctx context.Context, s Store, prefix, what string) (map[string]*T, []string, error) {
	kvs, err := s.List(ctx, prefix)
	if err != nil {
		return nil, nil, err
	}
	out := make(map[string]*T, len(kvs))
	names := make([]string, 0, len(kvs))
	for _, kv := range kvs {
		v, err := decode[T](kv, what)
		if err != nil {
			return nil, nil, err
		}
		name := strings.TrimPrefix(kv.Key, prefix)
		out[name] = v
		names = append(names, name)
	}
	return out, names, nil
}

func decode[T any](kv KV, what string) (*T, error) {
	v := new(T)
	if err := decodeKnown(kv.Value, v); err == nil {
		return v, nil // the common case: no field this release does not know
	}
	*v = *new(T)
	if err := json.Unmarshal(kv.Value, v); err != nil {
		return nil, fmt.Errorf("decode %s %s: %w", what, kv.Key, err)
	}
	keepUnknown(kv.Value, v) // fields of a later release, written back as they were (unknown.go)
	return v, nil
}

func encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("encode %T: %v", v, err)) // plain structs always encode
	}
	return withUnknown(b, v)
}
