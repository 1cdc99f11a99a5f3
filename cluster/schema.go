package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/drayage/drayage/protocol"
)

// The records' version. The store says which protocol version its records are written
// in (PREFIX/schema; a store without that key is at version 1, the first). A node
// checks it when it starts, and while it runs: it refuses a store whose records are newer
// than the newest version it speaks, or older than the oldest. The version is raised
// (migrate.go) once every node speaks the next one, as etcd raises its cluster version:
// from then on a node of an older release is refused, naming both versions.

// Errors of the records' version; callers tell them apart with errors.Is.
var (
	// ErrSchemaTooNew means the store's records are at a version newer than the node
	// speaks: every node spoke it when it was raised, and this one is of an older release.
	ErrSchemaTooNew = errors.New("the cluster store's records are newer than this release")
	// ErrSchemaTooOld means the store's records are at a version this release no longer
	// reads: the cluster skipped a release.
	ErrSchemaTooOld = errors.New("the cluster store's records are older than this release reads")
)

// Schema is the record of the version the store's records are in.
type Schema struct {
	// Version is the protocol version the records are written in.
	Version int `json:"version"`
	// By and At say which node raised it to Version, and when (empty for version 1 on a
	// store that never had the key).
	By      string    `json:"by,omitempty"`
	At      time.Time `json:"at,omitempty"`
	Unknown `json:"-"`
	rev     int64
}

func (r *Registry) schemaKey() string { return r.prefix + "schema" }

// Schema reads the version the store's records are in: version 1 if the store has no
// record of it.
func (r *Registry) Schema(ctx context.Context) (Schema, error) {
	s, rev, err := read[Schema](ctx, r.store, r.schemaKey(), "records' version")
	switch {
	case errors.Is(err, ErrNotFound):
		return Schema{Version: 1}, nil
	case err != nil:
		return Schema{}, err
	}
	s.rev = rev
	return *s, nil
}

// CheckSchema reads the store's version and refuses it, naming node, what it speaks
// and what to do, if node does not speak it.
func (r *Registry) CheckSchema(ctx context.Context, node string, speaks protocol.Range) (Schema, error) {
	s, err := r.Schema(ctx)
	if err != nil {
		return Schema{}, unreadSchema(node, err)
	}
	return s, s.Check(node, speaks)
}

// unreadSchema says that node could not read the records' version, and what to do.
func unreadSchema(node string, err error) error {
	return fmt.Errorf("node %q: cannot read the version of the cluster store's records: %w; check that the store answers (drayage status), then start the node again", node, err)
}

// StartSchema is CheckSchema for a node that starts. On a new cluster (a store with no
// record of the version, no node records, not even node's own, and no volumes) whose
// first node no longer speaks version 1, it first writes the oldest version node speaks,
// so that a cluster started by such a release is not refused. A store any node has used
// is never new: its records are at 1, and a release that no longer reads them is refused.
func (r *Registry) StartSchema(ctx context.Context, node string, speaks protocol.Range) (Schema, error) {
	s, err := r.Schema(ctx)
	if err == nil && s.rev == 0 && speaks.Oldest > s.Version && r.unused(ctx) {
		first := Schema{Version: speaks.Oldest, By: node, At: time.Now().UTC()}
		if _, err := r.store.Txn(ctx, []Cond{Absent(r.schemaKey())}, []Op{Put(r.schemaKey(), encode(first))}); err == nil {
			return first, nil
		}
		return r.CheckSchema(ctx, node, speaks) // another node wrote it first, or no answer: read what is there
	}
	if err != nil {
		return Schema{}, unreadSchema(node, err)
	}
	return s, s.Check(node, speaks)
}

// errFound stops a Scan at its first key.
var errFound = errors.New("found a key")

// unused reports whether the store holds no node record and no volume under the prefix.
func (r *Registry) unused(ctx context.Context) bool {
	for _, prefix := range []string{r.prefix + "nodes/", r.volumesPrefix()} {
		if err := r.store.Scan(ctx, prefix, func(KV) error { return errFound }); err != nil {
			return false // a key, or no answer: not known to be unused
		}
	}
	return true
}

// Check refuses s, naming node, what it speaks and what to do, if node does not speak
// s's version.
func (s Schema) Check(node string, speaks protocol.Range) error {
	switch {
	case s.Version > speaks.Newest:
		return fmt.Errorf("node %q speaks protocol %s, but the cluster store's records are at version %d%s: "+
			"install a release that speaks %d on node %q (drayage version shows what a release speaks): %w",
			node, speaks, s.Version, s.raised(), s.Version, node, ErrSchemaTooNew)
	case s.Version < speaks.Oldest:
		return fmt.Errorf("node %q speaks protocol %s, but the cluster store's records are at version %d, which this release no longer reads: "+
			"run on node %q a release that speaks %d until every node has, then upgrade one release at a time: %w",
			node, speaks, s.Version, node, s.Version, ErrSchemaTooOld)
	}
	return nil
}

// raised says who raised the version and when, if the record says.
func (s Schema) raised() string {
	if s.By == "" {
		return ""
	}
	return fmt.Sprintf(" (raised by node %q at %s, when every node spoke it)", s.By, s.At.UTC().Format(time.RFC3339))
}
