package cluster

import (
	"context"
	"time"
)

// Node is the record of a cluster member.
type Node struct {
	Name      string   `json:"name"`
	Addresses []string `json:"addresses,omitempty"`
	Version   string   `json:"version,omitempty"`
	// Protocol is the protocol range the node speaks ("1", "1-2"); empty in records of
	// releases before it was written, which spoke 1.
	Protocol string    `json:"protocol,omitempty"`
	Started  time.Time `json:"started"`
	LastSeen time.Time `json:"last_seen"`
}

// PutNode writes a node record.
func (r *Registry) PutNode(ctx context.Context, n Node) error {
	_, err := r.store.Txn(ctx, nil, []Op{Put(r.nodeKey(n.Name), encode(n))})
	return err
}

// Node reads one node record. It returns ErrNotFound if the node has none.
func (r *Registry) Node(ctx context.Context, name string) (Node, error) {
	n, _, err := read[Node](ctx, r.store, r.nodeKey(name), "node record")
	if err != nil {
		return Node{}, err
	}
	return *n, nil
}

// Nodes lists the node records, sorted by name.
func (r *Registry) Nodes(ctx context.Context) ([]Node, error) {
	nodes, names, err := readAll[Node](ctx, r.store, r.prefix+"nodes/", "node record")
	if err != nil {
		return nil, err
	}
	out := make([]Node, 0, len(names))
	for _, name := range names {
		out = append(out, *nodes[name])
	}
	return out, nil
}
